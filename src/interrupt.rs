//! SIGINT and SIGTERM during a run: stop starting new steps, cancel the
//! queries in flight (where the warehouse allows), and let the command record
//! the release as `interrupted`, release the lock and exit 130 / 143.
//!
//! A publish is never cut by a signal: on DuckDB it is one transaction that
//! either commits or not, and elsewhere the journal makes it resumable. A
//! signal that arrives while publishing is noted and the publish completes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::signal::unix::{signal, SignalKind};

use crate::warehouse::Warehouse;

#[derive(Default)]
struct State {
    /// the signal number received, if any
    signal: Option<i32>,
    publishing: bool,
}

pub struct Interrupt {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Interrupt {
    /// Listen for SIGINT and SIGTERM for the rest of the run.
    pub fn install(wh: Arc<dyn Warehouse>) -> Result<Interrupt> {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (state, stop) = (state.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    let number = tokio::select! {
                        _ = int.recv() => libc::SIGINT,
                        _ = term.recv() => libc::SIGTERM,
                    };
                    let publishing = {
                        let mut s = state.lock().expect("interrupt state poisoned");
                        s.signal.get_or_insert(number);
                        s.publishing
                    };
                    stop.store(true, Ordering::SeqCst);
                    if publishing {
                        eprintln!("airlock: {} received while publishing; the publish completes first", name(number));
                    } else {
                        eprintln!("airlock: {} received: stopping, cancelling the queries in flight", name(number));
                        wh.cancel().await;
                    }
                }
            })
        };
        Ok(Interrupt { state, stop, task })
    }

    /// Set once a signal arrived: no new step may start.
    pub fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }

    /// The exit code the signal asks for (130 for SIGINT, 143 for SIGTERM).
    pub fn exit_code(&self) -> Option<u8> {
        self.state.lock().expect("interrupt state poisoned").signal.map(|n| 128 + n as u8)
    }

    /// Enter the publish: false when a signal already arrived (then do not
    /// publish). From here on a signal waits for the publish to finish.
    pub fn enter_publish(&self) -> bool {
        let mut s = self.state.lock().expect("interrupt state poisoned");
        if s.signal.is_some() {
            return false;
        }
        s.publishing = true;
        true
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn name(signal: i32) -> &'static str {
    if signal == libc::SIGTERM {
        "SIGTERM"
    } else {
        "SIGINT"
    }
}
