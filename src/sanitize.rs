//! Making text that peers control safe to print on a terminal.
//!
//! Display names and messages arrive from other peers and are printed on the user's
//! terminal. Printed raw, they could carry escape sequences that recolour or clear the
//! screen, move the cursor to overwrite earlier lines, set the window title, write to the
//! clipboard (OSC 52) or hide links (OSC 8); backspaces and carriage returns that overwrite
//! what was just printed; or invisible Unicode characters (bidi overrides, zero-width
//! characters) that make one name look like another or reorder text ("Trojan Source").
//!
//! [`message`] and [`name`] remove all of these and keep everything else, including accents,
//! CJK and emoji, unchanged:
//!
//! * escape sequences as a whole: CSI (`ESC [` parameters, final byte), string sequences
//!   (OSC `ESC ]`, DCS `ESC P`, SOS `ESC X`, PM `ESC ^`, APC `ESC _`, up to BEL or
//!   `ESC \`), other `ESC` sequences (`ESC (B`, `ESC c`, ...), and the same sequences
//!   introduced by 8-bit C1 characters (U+009B CSI, U+009D OSC, ...). A sequence cut off by
//!   the end of the text is removed up to the end;
//! * C0 control characters, DEL and C1 control characters (U+0080..U+009F);
//! * bidi embedding, override and isolate characters (U+202A..U+202E, U+2066..U+2069, and
//!   U+061C ARABIC LETTER MARK), zero-width and direction marks (U+200B..U+200F), the byte
//!   order mark U+FEFF, and a few other invisible format characters (U+180E,
//!   U+2060..U+2064, U+206A..U+206F, U+FFF9..U+FFFB).
//!
//! Messages keep line breaks (`\n`, with `\r\n`, a lone `\r`, U+2028 and U+2029 turned into
//! `\n`) and turn a tab into four spaces. Messages also keep ZERO WIDTH JOINER and
//! NON-JOINER (U+200D, U+200C) where they sit between two visible non-ASCII characters,
//! since emoji sequences (a family emoji is 👨, ZWJ, 👩, ZWJ, 👧) and some scripts (Persian,
//! Indic) need them. Names drop those too, plus invisible fillers such as U+3164 HANGUL
//! FILLER, so that a name cannot look like another name or like nothing.

/// The most characters (Unicode scalar values) that [`name`] returns.
pub const MAX_NAME_CHARS: usize = 32;

/// What a tab in a message becomes.
const TAB: &str = "    ";

/// The text of a chat message, safe to print: escape sequences, control characters and
/// invisible spoofing characters removed, line breaks kept as `\n`, tabs turned into four
/// spaces. See the module documentation for the exact rules.
pub fn message(text: &str) -> String {
    clean(text, Mode::Message)
}

/// A display name, safe to print on one line: cleaned as [`message`] is (but also without
/// zero-width joiners and invisible fillers), every run of whitespace or line breaks turned
/// into one space, trimmed, and cut to at most [`MAX_NAME_CHARS`] characters (the last one
/// an ellipsis `…` when cut).
///
/// Returns an empty string when nothing printable is left; the caller decides what to show
/// instead.
pub fn name(text: &str) -> String {
    let cleaned = clean(text, Mode::Name);
    let mut words = cleaned.split_whitespace();
    let mut single_line = String::with_capacity(cleaned.len());
    if let Some(first) = words.next() {
        single_line.push_str(first);
        for word in words {
            single_line.push(' ');
            single_line.push_str(word);
        }
    }
    if single_line.chars().count() <= MAX_NAME_CHARS {
        return single_line;
    }
    let mut cut: String = single_line.chars().take(MAX_NAME_CHARS - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// The label to show for a peer whose (already sanitised) display name is `name`: the name
/// itself, or, when `taken` (another peer already shows under that name), the name followed
/// by `#` and the last four characters of the peer's base58 `PeerId`, e.g. `Bob#a1b2`.
///
/// The suffix tells honest peers apart; it is not an identity check (four base58 characters
/// can be matched by generating keys), which is what safety numbers are for.
pub fn disambiguate(name: &str, peer_id_base58: &str, taken: bool) -> String {
    if !taken {
        return name.to_owned();
    }
    // A real base58 peer id is all ASCII letters and digits; anything else is dropped so
    // that a malformed argument cannot smuggle characters onto the terminal.
    let id: Vec<char> = peer_id_base58
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let suffix: String = id[id.len().saturating_sub(4)..].iter().collect();
    format!("{name}#{suffix}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Message,
    Name,
}

const ESC: char = '\u{1b}';
const BEL: char = '\u{07}';
/// 8-bit STRING TERMINATOR.
const ST: char = '\u{9c}';
/// CANCEL and SUBSTITUTE abort an escape sequence in a terminal.
const CAN: char = '\u{18}';
const SUB: char = '\u{1a}';
const ZWNJ: char = '\u{200c}';
const ZWJ: char = '\u{200d}';

fn clean(text: &str, mode: Mode) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        i += 1;
        match c {
            ESC => i = skip_escape(&chars, i),
            // 8-bit CSI, and DCS, SOS, OSC, PM, APC: the 8-bit forms of `ESC [`, `ESC P`, ...
            '\u{9b}' => i = skip_csi(&chars, i),
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => i = skip_string(&chars, i),
            '\r' | '\n' | '\u{2028}' | '\u{2029}' => {
                if c == '\r' && chars.get(i) == Some(&'\n') {
                    i += 1;
                }
                out.push(match mode {
                    Mode::Message => '\n',
                    Mode::Name => ' ',
                });
            }
            '\t' => out.push_str(match mode {
                Mode::Message => TAB,
                Mode::Name => " ",
            }),
            ZWJ | ZWNJ
                if mode == Mode::Message
                    && out.chars().next_back().is_some_and(|p| joinable(p, mode))
                    && chars.get(i).is_some_and(|&n| joinable(n, mode)) =>
            {
                out.push(c);
            }
            c if is_dropped(c, mode) => {}
            c => out.push(c),
        }
    }
    out
}

/// Characters removed wherever they appear (escape sequences aside).
fn is_dropped(c: char, mode: Mode) -> bool {
    // C0, DEL and C1 controls.
    c.is_control()
        || matches!(c,
            '\u{061c}'               // ARABIC LETTER MARK
            | '\u{180e}'             // MONGOLIAN VOWEL SEPARATOR
            | '\u{200b}'..='\u{200f}' // zero-width space, (non-)joiner, LRM, RLM
            | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{206a}'..='\u{206f}' // deprecated format characters
            | '\u{feff}'             // ZERO WIDTH NO-BREAK SPACE (byte order mark)
            | '\u{fff9}'..='\u{fffb}' // interlinear annotation
        )
        || (mode == Mode::Name
            && matches!(
                c,
                '\u{00ad}'            // SOFT HYPHEN
                | '\u{034f}'          // COMBINING GRAPHEME JOINER
                | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}' // Hangul fillers
                | '\u{17b4}' | '\u{17b5}' // Khmer invisible vowels
            ))
}

/// Whether a zero-width (non-)joiner next to `c` may be kept in a message.
fn joinable(c: char, mode: Mode) -> bool {
    !c.is_ascii() && !c.is_whitespace() && !is_dropped(c, mode)
}

/// Skips what follows an `ESC` at `chars[i - 1]`; returns the index to continue at.
fn skip_escape(chars: &[char], i: usize) -> usize {
    match chars.get(i) {
        None => i,
        Some('[') => skip_csi(chars, i + 1),
        Some(']' | 'P' | 'X' | '^' | '_') => skip_string(chars, i + 1),
        // Intermediate bytes, then a final byte: `ESC ( B`, `ESC # 8`, `ESC c`, `ESC 7`.
        Some(_) => {
            let mut j = i;
            while chars
                .get(j)
                .is_some_and(|c| ('\u{20}'..='\u{2f}').contains(c))
            {
                j += 1;
            }
            if chars
                .get(j)
                .is_some_and(|c| ('\u{30}'..='\u{7e}').contains(c))
            {
                j += 1;
            }
            // Anything else (a control, DEL, non-ASCII) ends the sequence and is looked at
            // again on its own.
            j
        }
    }
}

/// Skips a CSI sequence whose introducer ends at `chars[i - 1]`: parameter and intermediate
/// bytes (U+0020..U+003F), then one final byte (U+0040..U+007E). Any other character ends
/// the sequence early and is looked at again on its own.
fn skip_csi(chars: &[char], i: usize) -> usize {
    let mut j = i;
    while let Some(&c) = chars.get(j) {
        match c {
            '\u{20}'..='\u{3f}' => j += 1,
            '\u{40}'..='\u{7e}' => return j + 1,
            _ => return j,
        }
    }
    j
}

/// Skips the body of an OSC, DCS, SOS, PM or APC string whose introducer ends at
/// `chars[i - 1]`, up to and including its terminator (BEL, `ESC \` or 8-bit ST; CAN and SUB
/// abort it). An `ESC` not followed by `\` ends the string and starts a new sequence. An
/// unterminated string runs to the end of the text.
fn skip_string(chars: &[char], i: usize) -> usize {
    let mut j = i;
    while let Some(&c) = chars.get(j) {
        match c {
            BEL | ST | CAN | SUB => return j + 1,
            ESC if chars.get(j + 1) == Some(&'\\') => return j + 2,
            ESC => return j,
            _ => j += 1,
        }
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `c` must never appear in sanitised output.
    fn is_unsafe(c: char, mode: Mode) -> bool {
        if c == '\n' {
            return mode == Mode::Name;
        }
        c.is_control()
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
            || matches!(c, '\u{200b}' | '\u{200e}' | '\u{200f}')
            || (mode == Mode::Name
                && matches!(c, '\u{200c}' | '\u{200d}' | '\u{2028}' | '\u{2029}'))
    }

    fn assert_safe(input: &str) {
        let m = message(input);
        assert!(
            !m.chars().any(|c| is_unsafe(c, Mode::Message)),
            "message({input:?}) = {m:?}"
        );
        let n = name(input);
        assert!(
            !n.chars().any(|c| is_unsafe(c, Mode::Name)),
            "name({input:?}) = {n:?}"
        );
        assert!(
            n.chars().count() <= MAX_NAME_CHARS,
            "name({input:?}) = {n:?}"
        );
        assert_eq!(n, n.trim(), "name({input:?}) = {n:?}");
    }

    // ---- ordinary text ----

    #[test]
    fn ordinary_text_is_kept() {
        for text in [
            "",
            "hello, world!",
            "ASCII punctuation: ~`!@#$%^&*()_+-={}[]|\\:;\"'<>,.?/",
            "Crème brûlée, naïve façade, Ærøskøbing, Straße",
            "Ελληνικά, Русский, עברית, العربية",
            "你好，世界。日本語のテキスト。한국어",
            "emoji 👋🎉🦉 ❤️ 👍🏽 🇩🇪",
            "e\u{301} combining accent",
            "non-breaking\u{a0}space and ideographic\u{3000}space",
        ] {
            assert_eq!(message(text), text);
        }
        assert_eq!(name("Zoë 🦉"), "Zoë 🦉");
        assert_eq!(name("李小龍"), "李小龍");
    }

    #[test]
    fn joiners_kept_in_emoji_and_scripts_in_messages() {
        let family = "👨\u{200d}👩\u{200d}👧";
        assert_eq!(message(family), family);
        let rainbow_flag = "🏳\u{fe0f}\u{200d}🌈";
        assert_eq!(message(rainbow_flag), rainbow_flag);
        let persian = "می\u{200c}خواهم";
        assert_eq!(message(persian), persian);
        let devanagari = "क्\u{200d}ष";
        assert_eq!(message(devanagari), devanagari);
    }

    #[test]
    fn joiners_dropped_where_they_could_spoof() {
        // Between ASCII letters, at the edges, next to spaces or next to each other.
        assert_eq!(message("Bo\u{200d}b"), "Bob");
        assert_eq!(message("a\u{200c}b"), "ab");
        assert_eq!(message("\u{200d}👋"), "👋");
        assert_eq!(message("👋\u{200d}"), "👋");
        assert_eq!(message("👋\u{200d} 👋"), "👋 👋");
        assert_eq!(message("👋\u{200d}\u{200d}👋"), "👋\u{200d}👋");
        // Names never keep them.
        assert_eq!(name("👨\u{200d}👩"), "👨👩");
        assert_eq!(name("ボ\u{200d}ブ"), "ボブ");
    }

    // ---- escape sequences ----

    #[test]
    fn csi_sequences() {
        assert_eq!(message("\x1b[31mred\x1b[0m"), "red");
        assert_eq!(message("\x1b[1;38;5;196mbold\x1b[m!"), "bold!");
        assert_eq!(message("before\x1b[2J\x1b[Hafter"), "beforeafter");
        assert_eq!(message("\x1b[?25lhidden cursor"), "hidden cursor");
        assert_eq!(message("\x1b[2 qcursor style"), "cursor style");
        assert_eq!(message("up\x1b[1Aover"), "upover");
        assert_eq!(message("\x1b[>0;1c"), "");
    }

    #[test]
    fn csi_ended_early_by_other_characters() {
        // The character that ends a malformed sequence is handled on its own.
        assert_eq!(message("\x1b[31\nx"), "\nx");
        assert_eq!(message("\x1b[31ésuite"), "ésuite");
        assert_eq!(message("\x1b[31\x1b[0mx"), "x");
        assert_eq!(message("\x1b[1\x07x"), "x");
    }

    #[test]
    fn osc_sequences() {
        assert_eq!(message("\x1b]0;evil title\x07after"), "after");
        assert_eq!(message("\x1b]2;title\x1b\\after"), "after");
        assert_eq!(
            message("see \x1b]8;;https://evil.example\x1b\\this link\x1b]8;;\x1b\\ ok"),
            "see this link ok"
        );
        // OSC 52: write to the clipboard.
        assert_eq!(message("\x1b]52;c;cm0gLXJmIH4=\x07x"), "x");
        // An ESC that is not `ESC \` ends the string and starts a new sequence.
        assert_eq!(message("\x1b]0;title\x1b[31mred"), "red");
        // CAN and SUB abort it.
        assert_eq!(message("\x1b]0;title\x18after"), "after");
        assert_eq!(message("\x1b]0;title\x1aafter"), "after");
        // 8-bit ST.
        assert_eq!(message("\x1b]0;title\u{9c}after"), "after");
    }

    #[test]
    fn other_string_sequences() {
        assert_eq!(message("\x1bPq#0;2;0;0;0#0~~@@vv\x1b\\after"), "after"); // DCS (sixel)
        assert_eq!(message("\x1bXsos\x1b\\after"), "after");
        assert_eq!(message("\x1b^pm\x1b\\after"), "after");
        assert_eq!(message("\x1b_apc\x07after"), "after");
    }

    #[test]
    fn other_escape_sequences() {
        assert_eq!(message("\x1bcreset"), "reset"); // RIS: `ESC c`, then "reset"
        assert_eq!(message("\x1b(0lqk\x1b(B"), "lqk"); // charset switches
        assert_eq!(message("\x1b#8"), ""); // DECALN
        assert_eq!(message("\x1b7saved\x1b8"), "saved"); // DECSC, DECRC
        assert_eq!(message("\x1bMup"), "up"); // reverse index
        assert_eq!(message("a\x1b\x1b[31mb"), "ab");
        // ESC before something that cannot continue a sequence: only ESC goes.
        assert_eq!(message("\x1bé"), "é");
        assert_eq!(message("\x1b\nx"), "\nx");
        assert_eq!(message("\x1b 👋"), "👋"); // ESC SP is an intermediate; 👋 ends it
    }

    #[test]
    fn eight_bit_c1_sequences() {
        assert_eq!(message("\u{9b}31mred\u{9b}0m"), "red");
        assert_eq!(message("\u{9d}0;title\u{9c}after"), "after");
        assert_eq!(message("\u{9d}0;title\x07after"), "after");
        assert_eq!(message("\u{90}dcs\u{9c}after"), "after");
        assert_eq!(
            message("\u{98}sos\u{9c}\u{9e}pm\u{9c}\u{9f}apc\u{9c}after"),
            "after"
        );
    }

    #[test]
    fn sequences_cut_off_at_end_of_text() {
        for tail in [
            "\x1b",
            "\x1b[",
            "\x1b[31",
            "\x1b[1;",
            "\x1b[?",
            "\x1b]",
            "\x1b]0;half a title",
            "\x1b]0;title\x1b",
            "\x1b]8;;https://evil.example",
            "\x1bP",
            "\x1b(",
            "\x1b#",
            "\u{9b}",
            "\u{9b}31",
            "\u{9d}0;title",
        ] {
            assert_eq!(message(&format!("hi{tail}")), "hi", "{tail:?}");
            assert_eq!(name(&format!("Bob{tail}")), "Bob", "{tail:?}");
        }
        // A sequence cut off at the *start* of a text is ordinary text.
        assert_eq!(message("31mred"), "31mred");
    }

    // ---- control characters ----

    #[test]
    fn c0_controls_dropped() {
        for c in (0u8..0x20).map(char::from) {
            if matches!(c, '\n' | '\r' | '\t' | ESC | CAN | SUB) {
                continue;
            }
            assert_eq!(message(&format!("a{c}b")), "ab", "{c:?}");
            assert_eq!(name(&format!("a{c}b")), "ab", "{c:?}");
        }
        assert_eq!(message("a\x18b\x1ac"), "abc");
        // Backspaces could overwrite what came before.
        assert_eq!(message("admin\x08\x08\x08\x08\x08guest"), "adminguest");
        assert_eq!(message("beep\x07"), "beep");
        assert_eq!(message("nul\0byte"), "nulbyte");
    }

    #[test]
    fn del_dropped() {
        assert_eq!(message("a\x7fb"), "ab");
        assert_eq!(name("\x7fBob\x7f"), "Bob");
    }

    #[test]
    fn c1_controls_dropped() {
        for c in ('\u{80}'..='\u{9f}')
            .filter(|c| !matches!(c, '\u{90}' | '\u{98}' | '\u{9b}'..='\u{9f}'))
        {
            assert_eq!(message(&format!("a{c}b")), "ab", "{c:?}");
            assert_eq!(name(&format!("a{c}b")), "ab", "{c:?}");
        }
        assert_eq!(message("a\u{9c}b"), "ab"); // a stray ST
        assert_eq!(message("line\u{85}next"), "linenext"); // NEL
    }

    #[test]
    fn line_breaks_in_messages() {
        assert_eq!(message("one\ntwo\n"), "one\ntwo\n");
        assert_eq!(message("one\r\ntwo\r\n"), "one\ntwo\n");
        // A lone carriage return would overwrite the line; it becomes a line break.
        assert_eq!(message("rm -rf ~\rls"), "rm -rf ~\nls");
        assert_eq!(message("a\r\r\nb"), "a\n\nb");
        assert_eq!(message("a\u{2028}b\u{2029}c"), "a\nb\nc");
        assert_eq!(message("\n\n"), "\n\n");
    }

    #[test]
    fn tabs_in_messages() {
        assert_eq!(message("a\tb"), "a    b");
        assert_eq!(message("\t\tx"), "        x");
    }

    // ---- invisible and bidi characters ----

    #[test]
    fn bidi_controls_dropped() {
        for c in ('\u{202a}'..='\u{202e}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{061c}'])
        {
            assert_eq!(message(&format!("a{c}b")), "ab", "{c:?}");
            assert_eq!(name(&format!("a{c}b")), "ab", "{c:?}");
        }
        // "Trojan Source": RLO makes `evil.exe` display reversed.
        assert_eq!(message("file\u{202e}exe.txt"), "fileexe.txt");
        assert_eq!(name("\u{2067}Bob\u{2069}"), "Bob");
    }

    #[test]
    fn zero_width_characters_dropped() {
        for c in [
            '\u{200b}', '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}', '\u{feff}',
        ] {
            assert_eq!(message(&format!("a{c}b")), "ab", "{c:?}");
            assert_eq!(name(&format!("a{c}b")), "ab", "{c:?}");
        }
        for c in ['\u{180e}', '\u{2060}', '\u{2063}', '\u{206a}', '\u{fff9}'] {
            assert_eq!(message(&format!("a{c}b")), "ab", "{c:?}");
        }
        assert_eq!(message("\u{feff}BOM at start"), "BOM at start");
    }

    #[test]
    fn invisible_fillers_dropped_from_names_only() {
        assert_eq!(name("\u{3164}"), "");
        assert_eq!(name("\u{3164}\u{115f}\u{1160}\u{ffa0}"), "");
        assert_eq!(name("Bo\u{ad}b"), "Bob");
        assert_eq!(name("B\u{34f}ob"), "Bob");
        // In a message a soft hyphen is ordinary text.
        assert_eq!(message("Bo\u{ad}b"), "Bo\u{ad}b");
    }

    // ---- names ----

    #[test]
    fn names_are_one_trimmed_line() {
        assert_eq!(name("  Bob  "), "Bob");
        assert_eq!(name("Bob\nSmith"), "Bob Smith");
        assert_eq!(name("Bob\r\n\r\nSmith"), "Bob Smith");
        assert_eq!(name("Bob\tSmith"), "Bob Smith");
        assert_eq!(name("Bob \t \n Smith"), "Bob Smith");
        assert_eq!(name("Bob\u{a0}\u{a0}Smith"), "Bob Smith");
        assert_eq!(name("Bob\u{2028}Smith"), "Bob Smith");
        assert_eq!(name("\x1b[31m Bob \x1b[0m"), "Bob");
    }

    #[test]
    fn empty_names() {
        for text in [
            "",
            "   ",
            "\n\t",
            "\x1b[31m\x1b[0m",
            "\u{200b}\u{202e}",
            "\x00\x07",
        ] {
            assert_eq!(name(text), "", "{text:?}");
        }
    }

    #[test]
    fn long_names_are_cut() {
        let exact = "a".repeat(MAX_NAME_CHARS);
        assert_eq!(name(&exact), exact);
        let long = "b".repeat(MAX_NAME_CHARS + 1);
        let cut = name(&long);
        assert_eq!(cut.chars().count(), MAX_NAME_CHARS);
        assert_eq!(cut, format!("{}…", "b".repeat(MAX_NAME_CHARS - 1)));
        // Counted in characters, not bytes.
        let cjk = "龍".repeat(40);
        assert_eq!(name(&cjk), format!("{}…", "龍".repeat(MAX_NAME_CHARS - 1)));
        // Invisible characters do not count towards the limit.
        let padded = format!("{}\u{200b}\u{200b}", "c".repeat(MAX_NAME_CHARS));
        assert_eq!(name(&padded), "c".repeat(MAX_NAME_CHARS));
        // No space before the ellipsis.
        let spaced = format!("{} rest of the name", "d".repeat(MAX_NAME_CHARS - 2));
        assert_eq!(
            name(&spaced),
            format!("{}…", "d".repeat(MAX_NAME_CHARS - 2))
        );
    }

    // ---- disambiguation ----

    #[test]
    fn disambiguate_names() {
        let id = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        assert_eq!(disambiguate("Bob", id, false), "Bob");
        assert_eq!(disambiguate("Bob", id, true), "Bob#nXTN");
        assert_eq!(
            disambiguate(
                "Bob",
                "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
                true
            ),
            "Bob#hx5N"
        );
        assert_eq!(disambiguate("Bob", "a1b", true), "Bob#a1b");
        assert_eq!(disambiguate("Bob", "", true), "Bob#");
        assert_eq!(disambiguate("Bob", "abc\x1b[2J\u{202e}", true), "Bob#bc2J");
        assert_eq!(disambiguate("", id, true), "#nXTN");
    }

    // ---- exhaustive safety checks ----

    #[test]
    fn every_single_character_is_safe() {
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let text = c.to_string();
            let m = message(&text);
            assert!(
                !m.chars().any(|c| is_unsafe(c, Mode::Message)),
                "{c:?} -> {m:?}"
            );
            let n = name(&text);
            assert!(
                !n.chars().any(|c| is_unsafe(c, Mode::Name)),
                "{c:?} -> {n:?}"
            );
        }
    }

    #[test]
    fn every_escape_pair_is_safe() {
        let interesting = (0u32..0x100)
            .chain([0x200b, 0x200d, 0x202e, 0x2066, 0xfeff, 0x1f44b])
            .filter_map(char::from_u32)
            .collect::<Vec<_>>();
        for intro in [ESC, '\u{9b}', '\u{9d}', '\u{90}'] {
            for &a in &interesting {
                for b in ['x', ESC, '\\', '[', '\u{9c}', '\n', BEL, 'm', ' ', 'é'] {
                    assert_safe(&format!("{intro}{a}{b}"));
                    assert_safe(&format!("{intro}{a}{b}tail{intro}"));
                    assert_safe(&format!("x{a}{intro}{b}"));
                }
            }
        }
    }

    #[test]
    fn output_is_stable() {
        // Cleaning twice changes nothing.
        for text in [
            "\x1b[31mred\x1b[0m\r\nline\ttab\u{202e}x\u{200d}y👨\u{200d}👩",
            "\u{9b}31m\u{85}\x7f\x1b]0;t\x07ok",
            "  Bob \n Smith \u{3164} ",
        ] {
            let m = message(text);
            assert_eq!(message(&m), m);
            let n = name(text);
            assert_eq!(name(&n), n);
        }
    }
}
