//! A detector of secrets in text: every common encoding of a byte string (hex, `Debug`
//! forms, base64 and PEM, decimal for big numbers) and a search that reports where each
//! one appears. Shared by `protocols/chat/tests/secrets_in_logs.rs` (tracing output of an
//! in-process node) and `tests/secrets_in_output.rs` (a real binary's stdout, stderr and log
//! file).

use rsa::traits::PrivateKeyParts;

/// A secret and its name, for failure messages.
pub struct Known {
    /// For failure messages.
    pub name: String,
    /// The secret.
    pub bytes: Vec<u8>,
    /// A big number: also looked for in decimal.
    pub number: bool,
}

/// A secret that is not a number.
pub fn known(name: impl Into<String>, bytes: &[u8]) -> Known {
    Known {
        name: name.into(),
        bytes: bytes.to_vec(),
        number: false,
    }
}

/// The decimal digits of a big-endian unsigned number.
pub fn decimal(be: &[u8]) -> String {
    let mut n: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
    let mut digits = Vec::new();
    while !n.is_empty() {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
        let lead = n.iter().take_while(|b| **b == 0).count();
        n.drain(..lead);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).expect("ASCII digits")
}

/// Lower-case hex.
pub fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Base64 of `b` with `alphabet`, padded or not.
pub fn base64(b: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let v = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(v[0]) << 16) | (u32::from(v[1]) << 8) | u32::from(v[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// The standard base64 alphabet.
pub const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// The URL-safe base64 alphabet.
pub const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `s` without any whitespace.
pub fn strip_ws(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Every encoding of `b` a log line could carry, as (encoding, text to look for). The `Debug`
/// forms are whitespace-free and lack the closing bracket, so that they match `{:?}` and
/// `{:#?}` (one element per line, trailing comma) in a whitespace-free haystack.
pub fn encodings(b: &[u8]) -> Vec<(&'static str, String, bool)> {
    let open = |s: String| strip_ws(&s).trim_end_matches(']').to_owned();
    let mut v = vec![
        ("lowercase hex", hex_lower(b), false),
        ("uppercase hex", hex_lower(b).to_uppercase(), false),
        ("Debug {:?}", open(format!("{b:?}")), true),
        ("Debug {:x?}", open(format!("{b:x?}")), true),
        ("Debug {:X?}", open(format!("{b:X?}")), true),
        ("Debug {:02x?}", open(format!("{b:02x?}")), true),
        ("base64 standard, padded", base64(b, STANDARD, true), false),
        (
            "base64 standard, unpadded",
            base64(b, STANDARD, false),
            false,
        ),
        ("base64 URL-safe, padded", base64(b, URL_SAFE, true), false),
        (
            "base64 URL-safe, unpadded",
            base64(b, URL_SAFE, false),
            false,
        ),
        // PEM wraps its base64 every 64 characters: look in the whitespace-free text.
        (
            "base64 across line breaks (PEM)",
            base64(b, STANDARD, true),
            true,
        ),
    ];
    // A prefix of a key, as a "short id" or fingerprint would show it.
    if b.len() >= 16 {
        v.push((
            "lowercase hex of the first 8 bytes",
            hex_lower(&b[..8]),
            false,
        ));
        v.push((
            "Debug of the first 8 bytes",
            open(format!("{:?}", &b[..8])),
            true,
        ));
    }
    v
}

/// Where `secret` appears in `text` (and its whitespace-free form), by encoding.
pub fn find(secret: &Known, text: &str, text_no_ws: &str, raw: Option<&[u8]>) -> Vec<String> {
    let mut hits = Vec::new();
    let mut all = encodings(&secret.bytes);
    if secret.number {
        all.push(("decimal", decimal(&secret.bytes), false));
    }
    for (enc, needle, in_stripped) in all {
        let hay = if in_stripped { text_no_ws } else { text };
        if let Some(at) = hay.find(&needle) {
            let from = hay[..at].char_indices().rev().nth(80).map_or(0, |(i, _)| i);
            let to = (at + needle.len() + 40).min(hay.len());
            let to = (to..=hay.len())
                .find(|i| hay.is_char_boundary(*i))
                .unwrap_or(hay.len());
            hits.push(format!(
                "{} as {enc}: ...{}...",
                secret.name,
                &hay[from..to]
            ));
        }
    }
    if let Some(raw) = raw
        && secret.bytes.len() >= 8
        && raw.windows(secret.bytes.len()).any(|w| w == secret.bytes)
    {
        hits.push(format!("{} as raw bytes", secret.name));
    }
    hits
}

/// A big number of an RSA key, looked for as bytes and in decimal.
pub fn big(name: &str, v: &rsa::BoxedUint) -> Known {
    Known {
        name: name.into(),
        bytes: v.to_be_bytes_trimmed_vartime().to_vec(),
        number: true,
    }
}

/// Every form of an RSA private key: its numbers and its encodings.
pub fn private_key_forms(whose: &str, key: &rsa::PrivateKey) -> Vec<Known> {
    let mut v = vec![big(&format!("{whose} RSA private exponent d"), key.d())];
    for (i, p) in key.primes().iter().enumerate() {
        v.push(big(&format!("{whose} RSA prime {i}"), p));
    }
    if let Some(dp) = key.dp() {
        v.push(big(&format!("{whose} RSA dp"), dp));
    }
    if let Some(dq) = key.dq() {
        v.push(big(&format!("{whose} RSA dq"), dq));
    }
    let pkcs1 = rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_der(key).expect("PKCS#1");
    v.push(known(
        format!("{whose} RSA private key, PKCS#1 DER"),
        pkcs1.as_bytes(),
    ));
    let pkcs8 = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(key).expect("PKCS#8");
    v.push(known(
        format!("{whose} RSA private key, PKCS#8 DER"),
        pkcs8.as_bytes(),
    ));
    v
}

/// A run of at least 32 hex digits, or of at least 16 comma-separated numbers: what key
/// material looks like whatever it is.
pub fn looks_like_key_material(s: &str) -> bool {
    let mut run = 0;
    for c in s.chars() {
        run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
        if run >= 32 {
            return true;
        }
    }
    let flat = strip_ws(s);
    let mut numbers = 0;
    for part in flat.split(',') {
        let digits = part.trim_start_matches('[').trim_end_matches(']');
        numbers = if !digits.is_empty()
            && digits.len() <= 3
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            numbers + 1
        } else {
            0
        };
        if numbers >= 16 {
            return true;
        }
    }
    false
}
