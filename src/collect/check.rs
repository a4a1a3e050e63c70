//! Structural checks before a datagram reaches the parser: they classify
//! malformed input by kind (SPEC §4.5) and find templates with absurd field
//! counts before anything is allocated for them.

/// Templates with more fields than this are rejected (real ones have < 100).
pub const MAX_TEMPLATE_FIELDS: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    Truncated,
    BadVersion,
    BadLength,
}

/// What a well-formed-looking datagram holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub version: u16,
    /// v9 source id / IPFIX observation domain (0 for v5).
    pub domain: u32,
    /// Bytes that belong to the message (v5: header + records; IPFIX: its length).
    pub len: usize,
    /// Templates announcing more than `MAX_TEMPLATE_FIELDS` fields.
    pub oversized_templates: u32,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

pub fn check(d: &[u8]) -> Result<Frame, Malformed> {
    let version = u16_at(d, 0).ok_or(Malformed::Truncated)?;
    match version {
        5 => check_v5(d),
        9 => check_v9(d),
        10 => check_ipfix(d),
        _ => Err(Malformed::BadVersion),
    }
}

fn check_v5(d: &[u8]) -> Result<Frame, Malformed> {
    let count = usize::from(u16_at(d, 2).ok_or(Malformed::Truncated)?);
    if d.len() < 24 {
        return Err(Malformed::Truncated);
    }
    if count > 30 {
        return Err(Malformed::BadLength);
    }
    let len = 24 + 48 * count;
    if d.len() < len {
        return Err(Malformed::Truncated);
    }
    Ok(Frame {
        version: 5,
        domain: 0,
        len,
        oversized_templates: 0,
    })
}

fn check_v9(d: &[u8]) -> Result<Frame, Malformed> {
    let domain = u32_at(d, 16).ok_or(Malformed::Truncated)?;
    let oversized = walk_sets(d, 20, d.len(), 9)?;
    Ok(Frame {
        version: 9,
        domain,
        len: d.len(),
        oversized_templates: oversized,
    })
}

fn check_ipfix(d: &[u8]) -> Result<Frame, Malformed> {
    let domain = u32_at(d, 12).ok_or(Malformed::Truncated)?;
    let len = usize::from(u16_at(d, 2).ok_or(Malformed::Truncated)?);
    if len < 16 {
        return Err(Malformed::BadLength);
    }
    if len > d.len() {
        return Err(Malformed::Truncated);
    }
    let oversized = walk_sets(d, 16, len, 10)?;
    Ok(Frame {
        version: 10,
        domain,
        len,
        oversized_templates: oversized,
    })
}

/// Walk the (flow)sets of a message; every set length must fit. Returns the
/// number of oversized templates.
fn walk_sets(d: &[u8], mut at: usize, end: usize, version: u16) -> Result<u32, Malformed> {
    let mut oversized = 0;
    // Fewer than 4 trailing bytes are padding (v9 allows it).
    while at + 4 <= end {
        let id = u16_at(d, at).ok_or(Malformed::Truncated)?;
        let len = usize::from(u16_at(d, at + 2).ok_or(Malformed::Truncated)?);
        if len < 4 || at + len > end {
            return Err(Malformed::BadLength);
        }
        let body = &d[at + 4..at + len];
        oversized += match (version, id) {
            (9, 0) | (10, 2) => oversized_in_templates(body, version, false),
            (9, 1) => oversized_v9_options(body),
            (10, 3) => oversized_in_templates(body, version, true),
            _ => 0,
        };
        at += len;
    }
    Ok(oversized)
}

/// Count templates whose field count exceeds the limit. Walking stops at the
/// first such template: its fields cannot be located without trusting it.
fn oversized_in_templates(body: &[u8], version: u16, options: bool) -> u32 {
    let mut at = 0;
    while let (Some(_id), Some(count)) = (u16_at(body, at), u16_at(body, at + 2)) {
        let count = usize::from(count);
        if count > MAX_TEMPLATE_FIELDS {
            return 1;
        }
        if count == 0 {
            // IPFIX withdrawal: template id + zero count, nothing follows.
            at += 4;
            continue;
        }
        at += if options { 6 } else { 4 };
        for _ in 0..count {
            let Some(ty) = u16_at(body, at) else { return 0 };
            let enterprise = version == 10 && ty & 0x8000 != 0;
            at += if enterprise { 8 } else { 4 };
        }
    }
    0
}

fn oversized_v9_options(body: &[u8]) -> u32 {
    match (u16_at(body, 2), u16_at(body, 4)) {
        (Some(scope), Some(opts)) => {
            u32::from((usize::from(scope) + usize::from(opts)) / 4 > MAX_TEMPLATE_FIELDS)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(check(&[0]), Err(Malformed::Truncated));
        assert_eq!(check(&[0, 7, 0, 0]), Err(Malformed::BadVersion));
        assert_eq!(check(&[0, 5, 0, 1]), Err(Malformed::Truncated));
        let mut ipfix = vec![0, 10, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        ipfix.extend_from_slice(&[1, 0, 0, 9]); // set longer than the message
        assert_eq!(check(&ipfix), Err(Malformed::BadLength));
        let mut tpl = vec![0, 10, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        tpl.extend_from_slice(&[0, 2, 0, 8, 1, 0, 0xff, 0xff]);
        assert_eq!(check(&tpl).map(|f| f.oversized_templates), Ok(1));
    }
}
