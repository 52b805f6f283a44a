//! Work spread over the machine's cores without changing its result.

/// `f` over `items` on up to as many threads as there are cores, results in
/// the order of `items` (so errors and everything built from them stay
/// deterministic). Small inputs stay on this thread.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    chunked(items, 64, f)
}

fn chunked<T: Sync, R: Send>(items: &[T], min_per_thread: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads_for(items.len(), min_per_thread);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let parts: Vec<&[T]> = items.chunks(items.len().div_ceil(threads)).collect();
    on_threads(parts, items.len(), |part| part.iter().map(&f).collect())
}

/// Threads for `n` items: up to the cores, at least `min_per_thread` items each.
fn threads_for(n: usize, min_per_thread: usize) -> usize {
    std::thread::available_parallelism().map_or(1, |c| c.get()).min(n / min_per_thread).max(1)
}

/// `work` on each part, a thread per part; the parts' results in order, in
/// one list of `n` sized once (collecting them grew it by doubling). A
/// panic in a part goes on here.
fn on_threads<P: Send, R: Send>(parts: Vec<P>, n: usize, work: impl Fn(P) -> Vec<R> + Sync) -> Vec<R> {
    let work = &work;
    std::thread::scope(|s| {
        let handles: Vec<_> = parts.into_iter().map(|part| s.spawn(move || work(part))).collect();
        let mut out = Vec::with_capacity(n);
        for h in handles {
            out.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        out
    })
}

/// [`map`] over items it owns, each moved into `f`.
pub fn map_owned<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let n = items.len();
    let threads = threads_for(n, 64);
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let chunk = n.div_ceil(threads);
    let mut parts = Vec::with_capacity(threads);
    let mut rest = items.into_iter();
    loop {
        let part: Vec<T> = rest.by_ref().take(chunk).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    on_threads(parts, n, |part| part.into_iter().map(&f).collect())
}

/// `f` over a few large items, each on its own thread up to the number of
/// cores; results in the order of `items`.
pub fn map_each<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    chunked(items, 1, f)
}
