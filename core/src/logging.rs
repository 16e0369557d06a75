//! The one decision every binary's log setup shares: whether text logs carry ANSI colours.

use std::ffi::OsStr;

/// Colour escapes only when the log goes to a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>). Container runtimes capture stdout/stderr through a pipe or file,
/// and escapes there end up as `\x1b[2m` garbage in `kubectl logs` and log collectors.
pub fn ansi_colours(writer_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    writer_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests;
