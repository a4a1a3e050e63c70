//! Compile-time types of operands and the comparison rules (SPEC §2.3).

use crate::query::plan::CmpOp;
use crate::record::{FieldType, SetOf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &std::net::IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// What an operand is, as far as the checks care.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Num,
    /// An address; the family is known for literals only.
    Ip(Option<Family>),
    Prefix(Family),
    Text,
    Set(Box<Kind>),
    EmptySet,
    /// Already reported as an error: never report again.
    Unknown,
}

impl Kind {
    pub fn of_field(t: FieldType) -> Kind {
        match t {
            FieldType::Uint | FieldType::Time | FieldType::Duration | FieldType::Float => Kind::Num,
            FieldType::Ip => Kind::Ip(None),
            FieldType::Text => Kind::Text,
            FieldType::Set(e) => Kind::Set(Box::new(match e {
                SetOf::Uint | SetOf::Time | SetOf::Float => Kind::Num,
                SetOf::Ip => Kind::Ip(None),
                SetOf::Text => Kind::Text,
            })),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Kind::Num => "a number".into(),
            Kind::Ip(None) => "an address".into(),
            Kind::Ip(Some(f)) => format!("an {} address", f.name()),
            Kind::Prefix(f) => format!("an {} prefix", f.name()),
            Kind::Text => "a string".into(),
            Kind::Set(e) => format!("a set of {}", plural(e)),
            Kind::EmptySet => "an empty set".into(),
            Kind::Unknown => "an unknown value".into(),
        }
    }
}

fn plural(k: &Kind) -> &'static str {
    match k {
        Kind::Num => "numbers",
        Kind::Ip(_) => "addresses",
        Kind::Text => "strings",
        _ => "values",
    }
}

fn compatible(a: &Kind, b: &Kind) -> bool {
    use Kind::*;
    match (a, b) {
        (Unknown, _) | (_, Unknown) => true,
        (Num, Num) | (Text, Text) => true,
        (Ip(x), Ip(y)) => x.is_none() || y.is_none() || x == y,
        (Set(_) | EmptySet, Set(_) | EmptySet) => true,
        _ => false,
    }
}

/// A type error: message and optional help.
pub type TypeError = (String, Option<String>);

/// Check `lhs op rhs`.
pub fn check_cmp(lhs: &Kind, op: CmpOp, rhs: &Kind) -> Result<(), TypeError> {
    if *lhs == Kind::Unknown || *rhs == Kind::Unknown {
        return Ok(());
    }
    if op == CmpOp::In {
        return check_in(lhs, rhs);
    }
    if matches!(lhs, Kind::Prefix(_)) || matches!(rhs, Kind::Prefix(_)) {
        return Err((
            "a prefix can only be tested with 'in'".into(),
            Some("write e.g. 'srcip in 10.0.0.0/8'".into()),
        ));
    }
    let num_ip = |a: &Kind, b: &Kind| matches!((a, b), (Kind::Num, Kind::Ip(_)));
    if num_ip(lhs, rhs) || num_ip(rhs, lhs) {
        return Err(("cannot compare an address with a number".into(), None));
    }
    if !compatible(lhs, rhs) {
        let help = match (lhs, rhs) {
            (Kind::Num, Kind::Text) | (Kind::Text, Kind::Num) => {
                Some("protocol names are written 'protocol(\"TCP\")'".into())
            }
            _ => None,
        };
        return Err((
            format!("cannot compare {} with {}", lhs.describe(), rhs.describe()),
            help,
        ));
    }
    let is_set = |k: &Kind| matches!(k, Kind::Set(_) | Kind::EmptySet);
    let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
    if ordering && (is_set(lhs) || is_set(rhs)) {
        return Err((
            "sets can only be compared with '=', '!=' or 'in'".into(),
            None,
        ));
    }
    Ok(())
}

fn check_in(lhs: &Kind, rhs: &Kind) -> Result<(), TypeError> {
    match rhs {
        Kind::Prefix(pf) => match lhs {
            Kind::Ip(Some(f)) if f != pf => Err((
                format!(
                    "an {} address is never in an {} prefix",
                    f.name(),
                    pf.name()
                ),
                None,
            )),
            Kind::Ip(_) => Ok(()),
            other => Err((
                format!(
                    "'in' with a prefix needs an address on the left, found {}",
                    other.describe()
                ),
                None,
            )),
        },
        Kind::Set(e) if compatible(lhs, e) => Ok(()),
        Kind::EmptySet => Ok(()),
        Kind::Set(e) => Err((
            format!(
                "cannot look for {} in a set of {}",
                lhs.describe(),
                plural(e)
            ),
            None,
        )),
        other => Err((
            format!(
                "'in' needs a prefix or a set on the right, found {}",
                other.describe()
            ),
            Some("write e.g. 'srcip in 10.0.0.0/8' or 'dstport in {80, 443}'".into()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_vs_number_is_an_error() {
        assert!(check_cmp(&Kind::Ip(None), CmpOp::Eq, &Kind::Num).is_err());
        assert!(check_cmp(&Kind::Num, CmpOp::Lt, &Kind::Num).is_ok());
    }

    #[test]
    fn in_needs_prefix_or_set_of_matching_family() {
        let v4 = Kind::Prefix(Family::V4);
        assert!(check_cmp(&Kind::Ip(None), CmpOp::In, &v4).is_ok());
        assert!(check_cmp(&Kind::Ip(Some(Family::V6)), CmpOp::In, &v4).is_err());
        assert!(check_cmp(&Kind::Num, CmpOp::In, &Kind::Num).is_err());
        let ports = Kind::Set(Box::new(Kind::Num));
        assert!(check_cmp(&Kind::Num, CmpOp::In, &ports).is_ok());
        assert!(check_cmp(&Kind::Ip(None), CmpOp::In, &ports).is_err());
    }
}
