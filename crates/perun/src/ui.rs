//! Terminal output helpers: progress bars only on a terminal, JSON when asked.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressStyle};

/// A byte-progress bar on a terminal, or a hidden one otherwise.
pub fn byte_bar(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{msg:>10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `text` with every character that can steer a terminal or disguise text written as an
/// escape: control characters (ANSI escapes, carriage returns, line breaks), bidi and
/// zero-width format characters, and whitespace that is not ASCII (it looks like a
/// space). Text from other parties is printed through it.
pub fn printable(text: &str) -> String {
    let disguising = |c: char| {
        c.is_control()
            || (c.is_whitespace() && !c.is_ascii())
            || matches!(c, '\u{ad}' | '\u{61c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    };
    text.chars().map(|c| if disguising(c) { c.escape_default().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_from_others_cannot_steer_the_terminal() {
        let shown = super::printable("job\u{1b}[2K\rreceivers: me\u{202e}x\u{a0}y");
        assert!(!shown.chars().any(|c| c.is_control() || c == '\u{202e}' || c == '\u{a0}'), "{shown}");
        assert_eq!(super::printable("plain name-1"), "plain name-1");
    }
}
