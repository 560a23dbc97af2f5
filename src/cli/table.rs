//! Plain-text tables and times for the command line's listings.

use std::borrow::Cow;

/// Prints `rows` under `headers`, each column as wide as its widest cell.
pub(super) fn print(headers: &[&str], rows: &[Vec<String>]) {
    say!("{}", render(headers, rows).trim_end_matches('\n'));
}

/// The table as text, one line per row, columns two spaces apart.
pub(super) fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<Cow<'_, str>>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| shown(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<Cow<'_, str>> = headers.iter().map(|h| Cow::Borrowed(*h)).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS` in UTC.
pub(super) fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1_000);
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil(days);
    let (h, m, s) = (of_day / 3_600, of_day % 3_600 / 60, of_day % 60);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}")
}

/// The proleptic Gregorian date `days` after 1970-01-01, counted in 400-year eras of
/// 146 097 days that start on 1 March, so leap days fall at the end of each year.
fn civil(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `text` as it may reach a terminal: control characters (escape sequences, line breaks)
/// and the characters that reorder or break lines (bidirectional overrides, line and
/// paragraph separators) written out as `\u{1b}`, so a value a sender chose can neither
/// drive the terminal nor pass for text of its own.
pub(super) fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if hidden(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Whether `c` is shown escaped by [`shown`].
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// `text` cut to `max` characters, with `…` when cut.
pub(super) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(time(1_709_210_096_789), "2024-02-29 12:34:56");
        assert_eq!(time(4_102_444_799_000), "2099-12-31 23:59:59");
    }

    #[test]
    fn columns_line_up_and_long_text_is_clipped() {
        let rows = vec![vec!["12".to_owned(), "dead".to_owned()]];
        assert_eq!(render(&["ID", "STATE"], &rows), "ID  STATE\n12  dead\n");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }

    #[test]
    fn control_characters_from_senders_are_written_out_not_sent_to_the_terminal() {
        let key = "x\u{1b}[2J\nheaders\r";
        assert_eq!(shown(key), "x\\u{1b}[2J\\u{a}headers\\u{d}");
        assert_eq!(shown("plain: \"text\" é"), "plain: \"text\" é");
        assert_eq!(shown("a\u{202e}b\u{2028}c"), "a\\u{202e}b\\u{2028}c");
        assert_eq!(shown("a\u{61c}b"), "a\\u{61c}b");
        let rows = vec![vec![key.to_owned()]];
        assert_eq!(
            render(&["KEY"], &rows),
            "KEY\nx\\u{1b}[2J\\u{a}headers\\u{d}\n"
        );
    }
}
