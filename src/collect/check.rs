//! Structural checks before a datagram reaches the parser: they classify
//! malformed input by kind (SPEC §4.5) and find templates with absurd field
//! counts before anything is allocated for them.

/// Templates with more fields than this are rejected (real ones have < 100).
pub const MAX_TEMPLATE_FIELDS: usize = 256;

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
    /// Templates the parser will refuse.
    pub templates: TemplateIssues,
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
        templates: TemplateIssues::default(),
    })
}

fn check_v9(d: &[u8]) -> Result<Frame, Malformed> {
    let domain = u32_at(d, 16).ok_or(Malformed::Truncated)?;
    let templates = walk_sets(d, 20, d.len(), 9)?;
    Ok(Frame {
        version: 9,
        domain,
        len: d.len(),
        templates,
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
    let templates = walk_sets(d, 16, len, 10)?;
    Ok(Frame {
        version: 10,
        domain,
        len,
        templates,
    })
}

/// Templates that the parser will refuse, found while walking the sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TemplateIssues {
    /// More than `MAX_TEMPLATE_FIELDS` fields.
    pub oversized: u32,
    /// No fields, zero record size, or a variable-length field in v9.
    pub invalid: u32,
}

impl TemplateIssues {
    fn add(&mut self, o: TemplateIssues) {
        self.oversized += o.oversized;
        self.invalid += o.invalid;
    }

    pub fn any(&self) -> bool {
        self.oversized + self.invalid > 0
    }
}

/// Walk the (flow)sets of a message; every set length must fit.
fn walk_sets(
    d: &[u8],
    mut at: usize,
    end: usize,
    version: u16,
) -> Result<TemplateIssues, Malformed> {
    let mut issues = TemplateIssues::default();
    // Fewer than 4 trailing bytes are padding (v9 allows it).
    while at + 4 <= end {
        let id = u16_at(d, at).ok_or(Malformed::Truncated)?;
        let len = usize::from(u16_at(d, at + 2).ok_or(Malformed::Truncated)?);
        if len < 4 || at + len > end {
            return Err(Malformed::BadLength);
        }
        let body = &d[at + 4..at + len];
        issues.add(match (version, id) {
            (9, 0) | (10, 2) => template_issues(body, version, false),
            (9, 1) => v9_options_issues(body),
            (10, 3) => template_issues(body, version, true),
            _ => TemplateIssues::default(),
        });
        at += len;
    }
    Ok(issues)
}

/// Check every template record of a template set. Walking stops at an
/// oversized template: its fields cannot be located without trusting it.
fn template_issues(body: &[u8], version: u16, options: bool) -> TemplateIssues {
    let mut issues = TemplateIssues::default();
    let mut at = 0;
    while let (Some(id), Some(count)) = (u16_at(body, at), u16_at(body, at + 2)) {
        let count = usize::from(count);
        if count > MAX_TEMPLATE_FIELDS {
            issues.oversized += 1;
            return issues;
        }
        if count == 0 {
            // IPFIX withdrawal (template id + zero count), or set padding.
            issues.invalid += u32::from(version == 9 && id >= 256);
            at += 4;
            continue;
        }
        at += if options { 6 } else { 4 };
        let (mut size, mut varlen) = (0usize, false);
        for _ in 0..count {
            let (Some(ty), Some(len)) = (u16_at(body, at), u16_at(body, at + 2)) else {
                return issues;
            };
            let enterprise = version == 10 && ty & 0x8000 != 0;
            at += if enterprise { 8 } else { 4 };
            if len == u16::MAX {
                varlen = true;
            } else {
                size += usize::from(len);
            }
        }
        let refused = (version == 9 && varlen) || (size == 0 && !varlen);
        issues.invalid += u32::from(refused);
    }
    issues
}

fn v9_options_issues(body: &[u8]) -> TemplateIssues {
    let mut issues = TemplateIssues::default();
    if let (Some(scope), Some(opts)) = (u16_at(body, 2), u16_at(body, 4)) {
        let (scope, opts) = (usize::from(scope), usize::from(opts));
        if (scope + opts) / 4 > MAX_TEMPLATE_FIELDS {
            issues.oversized = 1;
        } else if scope == 0 || scope % 4 != 0 || opts % 4 != 0 {
            issues.invalid = 1;
        }
    }
    issues
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
        assert_eq!(check(&tpl).map(|f| f.templates.oversized), Ok(1));
        let mut zero = vec![0, 10, 0, 28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        zero.extend_from_slice(&[0, 2, 0, 12, 1, 0, 0, 1, 0, 8, 0, 0]);
        assert_eq!(check(&zero).map(|f| f.templates.invalid), Ok(1));
    }
}
