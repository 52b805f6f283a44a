//! Reading SQL text without parsing it: where a second statement starts.
//! A model, test or hook is one statement; `select 1; drop table x` must be
//! refused at load, not sent. Quotes, comments and dollar-quoted bodies are
//! skipped so a `;` inside them does not count.

/// The byte offset of the `;` that ends the first statement when another
/// statement follows it (anything but whitespace, comments and further `;`).
pub fn second_statement(sql: &str) -> Option<usize> {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut end_of_first: Option<usize> = None;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' | b'`' => {
                if end_of_first.is_some() {
                    return end_of_first;
                }
                i = skip_quoted(b, i, c);
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map(|n| i + n + 1).unwrap_or(b.len());
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map(|n| i + 2 + n + 2).unwrap_or(b.len());
                continue;
            }
            b'$' => {
                if let Some(tag_end) = dollar_tag(b, i) {
                    if end_of_first.is_some() {
                        return end_of_first;
                    }
                    let tag = &sql[i..=tag_end];
                    i = sql[tag_end + 1..].find(tag).map(|n| tag_end + 1 + n + tag.len()).unwrap_or(b.len());
                    continue;
                }
            }
            b';' => {
                end_of_first.get_or_insert(i);
            }
            c if c.is_ascii_whitespace() => {}
            _ => {
                if end_of_first.is_some() {
                    return end_of_first;
                }
            }
        }
        i += 1;
    }
    None
}

/// Past the closing quote (a doubled quote is an escaped one; a backslash
/// escapes the next byte, as in Snowflake and BigQuery string literals).
fn skip_quoted(b: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && quote != b'"' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// `$$` or `$tag$` starting at `i`: the offset of its closing `$`.
fn dollar_tag(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    (j < b.len() && b[j] == b'$' && !b.get(i + 1).is_some_and(u8::is_ascii_digit)).then_some(j)
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&c| c == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_with_trailing_semicolons_and_comments_is_one() {
        for sql in ["select 1", "select 1;", "select 1 ;\n-- done\n", "select 1; /* c */ ;", "select ';' as a, \"x;y\" from t", "select $$a;b$$", "select 'it''s; fine'"] {
            assert_eq!(second_statement(sql), None, "{sql}");
        }
    }

    #[test]
    fn a_second_statement_is_found_at_its_semicolon() {
        assert_eq!(second_statement("select 1; drop table x"), Some(8));
        assert_eq!(second_statement("select 1;\n-- c\ndrop table x"), Some(8));
        assert_eq!(second_statement("select 'a'; select \"b\""), Some(10));
        assert_eq!(line_of("select 1\n;\ndrop", 9), 2);
    }

    #[test]
    fn never_panics_on_odd_text() {
        for sql in ["'", "$", "$a", "/*", "--", "é;é", "$1;x", "\\'"] {
            let _ = second_statement(sql);
        }
    }
}
