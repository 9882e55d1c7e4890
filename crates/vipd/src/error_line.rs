//! An error and its causes as one line, `a: b: c`, each said once. Some errors put
//! their source's text in their own message as well as returning it as their source
//! (`reading /x: permission denied`, source `permission denied`); printing every link
//! of such a chain would say the cause twice. A cause whose text the line already holds
//! is left out.

use std::error::Error;

/// `errors` (an error, then its causes in order) as one line.
pub fn line<'a>(errors: impl IntoIterator<Item = &'a (dyn Error + 'static)>) -> String {
    let mut out = String::new();
    for e in errors {
        let text = e.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// `e` and its causes as one line.
pub fn of(e: &(dyn Error + 'static)) -> String {
    let mut all = vec![e];
    let mut cur = e.source();
    while let Some(c) = cur {
        all.push(c);
        cur = c.source();
    }
    line(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Leaf {
        #[error("reading {path}: {source}")]
        Read {
            path: &'static str,
            source: std::io::Error,
        },
    }

    #[derive(Debug, thiserror::Error)]
    #[error("starting")]
    struct Top(#[source] Leaf);

    #[test]
    fn a_cause_the_message_already_holds_is_said_once() {
        let leaf = Leaf::Read {
            path: "/x",
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        };
        let top = Top(leaf);
        assert_eq!(
            of(&top),
            "starting: reading /x: Permission denied (os error 13)"
        );
        let e = anyhow::Error::new(top).context("running");
        assert_eq!(
            line(e.chain()),
            "running: starting: reading /x: Permission denied (os error 13)"
        );
    }

    #[test]
    fn causes_of_their_own_are_all_said() {
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(line(e.chain()), "outer: middle: inner");
    }
}
