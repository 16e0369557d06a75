use super::*;

#[test]
fn colours_only_on_a_terminal_without_no_color() {
    assert!(ansi_colours(true, None));
    assert!(ansi_colours(true, Some(OsStr::new(""))));
    assert!(!ansi_colours(true, Some(OsStr::new("1"))));
    assert!(!ansi_colours(false, None), "a pipe or file gets plain text");
    assert!(!ansi_colours(false, Some(OsStr::new("1"))));
}
