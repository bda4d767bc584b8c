//! Request paths the gateway refuses to route: dot segments in any
//! spelling a backend might decode them from.
//!
//! A `..` that reaches an endpoint through a `/*` resource climbs out of the
//! path the API exposes, so it is refused before routing, however it is
//! written: plainly, percent-encoded (`%2e%2e`, `%2E.`), encoded twice
//! (`%252e`), behind an encoded separator (`a%2f..%2fb`), with a backslash
//! (`..\`, `%5c`) as some servers treat it as `/`, or with a `;` parameter
//! (`..;x`), which some servers drop before resolving the path.

/// How many rounds of percent-decoding a segment gets: enough for a doubly
/// encoded `%252e`, bounded so that a hostile path costs linear time.
const DECODE_ROUNDS: usize = 3;

/// Does `path` contain a `.` or `..` segment in any spelling?
pub fn has_dot_segment(path: &str) -> bool {
    // The common case costs one scan: no dot, no escape, no backslash.
    if !path.bytes().any(|b| matches!(b, b'.' | b'%' | b'\\')) {
        return false;
    }
    path.split('/').any(segment_is_dot)
}

fn segment_is_dot(segment: &str) -> bool {
    if is_dot_piece(segment.as_bytes()) {
        return true;
    }
    if !segment.bytes().any(|b| matches!(b, b'%' | b'\\' | b';')) {
        return false;
    }
    let mut current = segment.as_bytes().to_vec();
    for round in 0..=DECODE_ROUNDS {
        if current
            .split(|b| matches!(b, b'/' | b'\\'))
            .any(is_dot_piece)
        {
            return true;
        }
        if round == DECODE_ROUNDS || !current.contains(&b'%') {
            break;
        }
        current = percent_decode(&current);
    }
    false
}

/// `.` or `..`, also with a `;parameter` after it.
fn is_dot_piece(piece: &[u8]) -> bool {
    let name = match piece.iter().position(|b| *b == b';') {
        Some(semi) => &piece[..semi],
        None => piece,
    };
    name == b"." || name == b".."
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                input.get(i + 1).and_then(|b| hex(*b)),
                input.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_in_every_spelling() {
        for path in [
            "/a/../b",
            "/a/./b",
            "/a/..",
            "/..",
            "/a/%2e%2e/b",
            "/a/%2E%2E/b",
            "/a/%2E./b",
            "/a/.%2e/b",
            "/a/%2e/b",
            "/a/x%2f..%2fb",
            "/a/x%2F%2e%2E%2Fb",
            "/a/..%5cb",
            "/a/..\\b",
            "/a/x\\..\\b",
            "/a/%252e%252e/b",
            "/a/%25252e%25252e/b",
            "/a/..;x/b",
            "/a/%2e%2e;jsessionid=1/b",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
    }

    #[test]
    fn ordinary_paths_pass() {
        for path in [
            "/",
            "/a/b",
            "/a/b.json",
            "/a/...",
            "/a/..b",
            "/a/b..",
            "/a/.hidden",
            "/a/x%2fy",
            "/a/%20b",
            "/a/%2e%2ex",
            "/a/50%",
            "/a/%zz",
            "",
        ] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }

    #[test]
    fn a_long_hostile_path_is_checked_in_bounded_time() {
        let path = format!("/{}", "%25".repeat(100_000));
        assert!(!has_dot_segment(&path));
    }
}
