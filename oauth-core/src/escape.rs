//! Text a client sent, made safe to print: a leaf module, so that errors and events can both
//! use it.

/// `detail` with every control character (C0, DEL, C1) and every bidirectional-text control
/// written as `\u{…}`: a detail quotes what a client sent (a client name, a username), and
/// stored events are printed to terminals and logs. Text without such characters is returned
/// as it is, without copying.
pub(crate) fn escape_detail(detail: String) -> String {
    if !detail.chars().any(needs_escape) {
        return detail;
    }
    let mut out = String::with_capacity(detail.len() + 16);
    for c in detail.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}
