//! Literal operands: values, prefixes, sets and `protocol("…")`, folded at
//! compile time.

use std::sync::Arc;

use crate::query::ast::{Arg, Lit};
use crate::query::diag::Sink;
use crate::query::suggest::did_you_mean;
use crate::query::typeck::{Family, Kind};
use crate::value::{Prefix, Value, ValueSet, F64};

/// IANA protocol numbers by (case-insensitive) keyword.
const PROTOCOLS: &[(&str, u64)] = &[
    ("HOPOPT", 0),
    ("ICMP", 1),
    ("IGMP", 2),
    ("GGP", 3),
    ("IPIP", 4),
    ("IPv4", 4),
    ("TCP", 6),
    ("EGP", 8),
    ("IGP", 9),
    ("UDP", 17),
    ("IPv6", 41),
    ("IPv6-Route", 43),
    ("IPv6-Frag", 44),
    ("RSVP", 46),
    ("GRE", 47),
    ("ESP", 50),
    ("AH", 51),
    ("ICMPv6", 58),
    ("IPv6-ICMP", 58),
    ("IPv6-NoNxt", 59),
    ("IPv6-Opts", 60),
    ("EIGRP", 88),
    ("OSPF", 89),
    ("OSPFIGP", 89),
    ("PIM", 103),
    ("VRRP", 112),
    ("L2TP", 115),
    ("SCTP", 132),
    ("UDPLite", 136),
];

/// Functions usable in rules (aggregate functions live in groupers).
pub const RULE_FUNCTIONS: &[&str] = &["protocol", "bitAND", "bitOR"];

/// A folded literal operand.
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    Value(Value),
    Prefix(Prefix),
    Set(ValueSet),
}

/// Result of trying to read an argument as a constant.
pub enum Folded {
    Const(Const, Kind),
    /// Not a constant (a field or another function).
    NotConst,
    /// A constant with an error, already reported.
    Failed,
}

pub fn fold(arg: &Arg, sink: &mut Sink<'_>) -> Folded {
    match arg {
        Arg::Lit(lit, _) => lit_const(lit),
        Arg::Call(f, args, span) if f.text == "protocol" => protocol(args, *span, sink),
        Arg::Set(elems, _) => set(elems, sink),
        _ => Folded::NotConst,
    }
}

fn lit_const(lit: &Lit) -> Folded {
    let v = |v, k| Folded::Const(Const::Value(v), k);
    match lit {
        Lit::Num(n) | Lit::Dur(n) | Lit::Time(n) => v(Value::Uint(*n), Kind::Num),
        Lit::Float(f) => v(Value::Float(F64(*f)), Kind::Num),
        Lit::Addr(a) => v(Value::Ip(*a), Kind::Ip(Some(Family::of(a)))),
        Lit::Str(s) => v(Value::Text(Arc::from(s.as_str())), Kind::Text),
        Lit::Prefix(p) => Folded::Const(Const::Prefix(*p), Kind::Prefix(Family::of(&p.addr))),
        Lit::Bad => Folded::Failed,
    }
}

/// The IANA number of a protocol keyword (`"TCP"` → 6), any case.
pub fn protocol_number(name: &str) -> Option<u8> {
    PROTOCOLS
        .iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(name))
        .and_then(|(_, n)| u8::try_from(*n).ok())
}

fn protocol(args: &[Arg], span: crate::query::ast::Span, sink: &mut Sink<'_>) -> Folded {
    let [Arg::Lit(Lit::Str(name), nspan)] = args else {
        sink.error_help(
            span,
            "protocol() takes one protocol name as a string",
            Some("write e.g. 'prot = protocol(\"TCP\")'".into()),
        );
        return Folded::Failed;
    };
    let found = PROTOCOLS.iter().find(|(p, _)| p.eq_ignore_ascii_case(name));
    match found {
        Some((_, n)) => Folded::Const(Const::Value(Value::Uint(*n)), Kind::Num),
        None => {
            sink.error_help(
                *nspan,
                format!("unknown protocol name \"{name}\""),
                did_you_mean(name, PROTOCOLS.iter().map(|(p, _)| *p)),
            );
            Folded::Failed
        }
    }
}

fn set(elems: &[Arg], sink: &mut Sink<'_>) -> Folded {
    let mut values = Vec::new();
    let mut kind: Option<Kind> = None;
    let mut failed = false;
    for e in elems {
        match fold(e, sink) {
            Folded::Const(Const::Value(v), k) => {
                let k = match k {
                    Kind::Ip(_) => Kind::Ip(None),
                    other => other,
                };
                match &kind {
                    Some(prev) if *prev != k => {
                        sink.error(
                            e.span(),
                            format!("set mixes {} and {}", prev.describe(), k.describe()),
                        );
                        failed = true;
                    }
                    _ => kind = Some(k),
                }
                values.push(v);
            }
            Folded::Failed => failed = true,
            Folded::Const(..) | Folded::NotConst => {
                sink.error(
                    e.span(),
                    "a set holds numbers, addresses or strings written out",
                );
                failed = true;
            }
        }
    }
    if failed {
        return Folded::Failed;
    }
    let kind = match kind {
        Some(k) => Kind::Set(Box::new(k)),
        None => Kind::EmptySet,
    };
    Folded::Const(Const::Set(ValueSet::from_vec(values)), kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::ast::Name;

    #[test]
    fn protocol_names_fold_case_insensitively() {
        for (name, n) in [
            ("tcp", 6),
            ("UDP", 17),
            ("icmpv6", 58),
            ("IPv6-ICMP", 58),
            ("sctp", 132),
        ] {
            let args = vec![Arg::Lit(Lit::Str(name.into()), Default::default())];
            let f = Name {
                text: "protocol".into(),
                span: Default::default(),
            };
            let mut sink = Sink::new("t", "");
            match fold(&Arg::Call(f, args, Default::default()), &mut sink) {
                Folded::Const(Const::Value(Value::Uint(got)), Kind::Num) => assert_eq!(got, n),
                _ => panic!("{name} did not fold"),
            }
        }
    }
}
