//! Where in `gateway.toml` an error is: line, column and the key, from byte offsets.

use std::ops::Range;
use std::path::Path;

use super::ConfigError;

/// Turns byte offsets into line and column for error messages.
pub(super) struct Locator<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
}

impl Locator<'_> {
    pub(super) fn error(&self, span: Range<usize>, key: &str, message: String) -> ConfigError {
        let (line, column) = if span == (0..0) {
            (0, 0)
        } else {
            let before = &self.text[..span.start.min(self.text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            (line, column)
        };
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            key: key.to_owned(),
            message,
        }
    }

    /// The dotted key a parse error points at: the enclosing `[table]` and the nearest
    /// `key =` before the error on its line (or the key itself, when the error is on it).
    ///
    /// A span is the key itself only when an `=` (or the `.` of a dotted key) follows it: a
    /// bare value such as `8443` or `true` reads like a key too.
    pub(super) fn key_at(&self, span: Range<usize>) -> String {
        let start = span.start.min(self.text.len());
        let end = span.end.clamp(start, self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        // On a `[table]` line, the table is what is at fault (a misspelled name, a field it
        // lacks), not the one before it.
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        if self.text[line_start..line_end]
            .trim_start()
            .starts_with('[')
        {
            return table_at(&self.text[..line_end]).unwrap_or_else(|| "file".to_owned());
        }
        let table = table_at(&self.text[..line_start]);

        let spanned = &self.text[start..end];
        let followed_by_key_end = self.text[end..]
            .trim_start_matches([' ', '\t'])
            .starts_with(['=', '.']);
        let is_key = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars().all(|c| c.is_alphanumeric() || "_-".contains(c))
        };
        let key = if followed_by_key_end && is_key(spanned) {
            Some(spanned.to_owned())
        } else {
            let before = self.text[line_start..start]
                .rfind('=')
                .map(|eq| &self.text[line_start..line_start + eq]);
            before.and_then(|b| {
                let b = b.trim_end();
                let from = b.rfind([' ', '{', ',', '\t']).map_or(0, |i| i + 1);
                let name = b[from..].trim_matches('"');
                is_key(name).then(|| name.to_owned())
            })
        };
        let path: Vec<String> = table
            .into_iter()
            .chain(open_inline_tables(&self.text[line_start..start]))
            .chain(key)
            .collect();
        if path.is_empty() {
            "file".to_owned()
        } else {
            path.join(".")
        }
    }
}

/// The table the end of `before` is in: `server` for `[server]`, and `routes[1]` for the
/// second `[[routes]]`, as errors found after parsing name them.
fn table_at(before: &str) -> Option<String> {
    let header = |line: &str| {
        let line = line.split('#').next().unwrap_or_default().trim();
        line.starts_with('[').then(|| line.to_owned())
    };
    let last = before.lines().rev().find_map(header)?;
    if !last.starts_with("[[") {
        return Some(last.trim_matches(['[', ']']).trim().to_owned());
    }
    let name = last.trim_matches(['[', ']']).trim();
    let index = before
        .lines()
        .filter_map(header)
        .filter(|l| l.starts_with("[[") && l.trim_matches(['[', ']']).trim() == name)
        .count()
        - 1;
    Some(format!("{name}[{index}]"))
}

/// The keys of the inline tables (`retry = { ...`) still open at the end of `line`.
fn open_inline_tables(line: &str) -> Vec<String> {
    let (mut open, mut word, mut last_key) = (Vec::new(), String::new(), String::new());
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => word.push(c),
            '=' => {
                last_key = std::mem::take(&mut word)
                    .trim()
                    .trim_matches('"')
                    .to_owned()
            }
            '{' => {
                open.push(std::mem::take(&mut last_key));
                word.clear();
            }
            '}' => {
                open.pop();
            }
            ',' => word.clear(),
            _ => word.push(c),
        }
    }
    open
}

/// A parse message with a hint for a typo: "unknown field `lisen`, expected one of
/// `listen`, ..." gains "; did you mean `listen`?".
pub(super) fn with_suggestion(message: &str) -> String {
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let Some((typed, known)) = quoted.split_first() else {
        return message.to_owned();
    };
    let nearest = known
        .iter()
        .map(|k| (edit_distance(typed, k), *k))
        .filter(|(d, k)| *d > 0 && *d <= (k.len() / 3).max(2))
        .min();
    match nearest {
        Some((_, key)) if message.starts_with("unknown") => {
            format!("{message}; did you mean `{key}`?")
        }
        _ => message.to_owned(),
    }
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_of_a_known_key_gets_a_suggestion() {
        let message = "unknown field `lisen`, expected one of `listen`, `tls`, `max_body`";
        assert!(with_suggestion(message).ends_with("did you mean `listen`?"));
    }

    #[test]
    fn a_key_like_none_of_the_known_ones_gets_none() {
        let message = "unknown field `colour`, expected one of `listen`, `tls`";
        assert_eq!(with_suggestion(message), message);
    }

    #[test]
    fn nested_inline_tables_name_the_whole_path() {
        let text = "[upstreams.a]\nretry = { max_attempts = 3, bogus = 1 }\n";
        let locate = Locator {
            file: Path::new("gateway.toml"),
            text,
        };
        let start = text.find("bogus").unwrap();
        assert_eq!(locate.key_at(start..start + 5), "upstreams.a.retry.bogus");
    }

    #[test]
    fn a_value_that_looks_like_a_key_is_named_by_its_key() {
        let text = "[server]\nlisten = 8443\nmax_body = 5\ntls = { cert = 5, key = \"k\" }\n\
            [[routes]]\nname = 5\n[upstreams.u]\ntimeout = true # not text\n";
        let locate = Locator {
            file: Path::new("gateway.toml"),
            text,
        };
        let key_of = |value: &str, nth: usize| {
            let start = text.match_indices(value).nth(nth).unwrap().0;
            locate.key_at(start..start + value.len())
        };
        assert_eq!(key_of("8443", 0), "server.listen");
        assert_eq!(key_of("5", 0), "server.max_body");
        assert_eq!(key_of("5", 1), "server.tls.cert");
        assert_eq!(key_of("5", 2), "routes[0].name");
        assert_eq!(key_of("true", 0), "upstreams.u.timeout");
        assert_eq!(key_of("listen", 0), "server.listen");
    }

    #[test]
    fn an_array_table_is_named_with_its_index() {
        let text = "[[routes]]\nname = \"a\"\n\n[upstreams.u]\nurl = \"x\"\n\n\
            [[routes]]  # the second\nname = \"b\"\ndedup = { window = \"72x\" }\n";
        let locate = Locator {
            file: Path::new("gateway.toml"),
            text,
        };
        let start = text.find("\"72x\"").unwrap();
        assert_eq!(locate.key_at(start..start + 5), "routes[1].dedup.window");
        let start = text.find("\"a\"").unwrap();
        assert_eq!(locate.key_at(start..start + 3), "routes[0].name");
        let start = text.find("\"x\"").unwrap();
        assert_eq!(locate.key_at(start..start + 3), "upstreams.u.url");
    }

    #[test]
    fn an_error_on_a_table_line_names_that_table() {
        let text = "[admin]\nlisten = \"x\"\n\n[stroe]\npath = \"p\"\n\n[[routes]]\nname = \"a\"\n\
            \n[[route]]\nname = \"b\"\n";
        let locate = Locator {
            file: Path::new("gateway.toml"),
            text,
        };
        let start = text.find("stroe").unwrap();
        assert_eq!(locate.key_at(start..start + 5), "stroe");
        let start = text.find("[[route]]").unwrap() + 2;
        assert_eq!(locate.key_at(start..start + 5), "route[0]");
        let start = text.find("[[routes]]").unwrap();
        assert_eq!(locate.key_at(start..start + 10), "routes[0]");
    }
}
