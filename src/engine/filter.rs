//! Rule evaluation (SPEC §2.3) over records (filters) and group records
//! (group filters), plus the comparison and delta primitives that the
//! grouper and the merger share.
//!
//! Evaluation runs on every record, so it works on borrowed data and
//! `Value`s that are cheap to build (sets are `Arc`s): no allocation.

use std::cmp::Ordering;

use crate::engine::Group;
use crate::query::plan::{Cmp, CmpOp, GroupField, Operand, Rule};
use crate::record::{Field, Record};
use crate::value::{Prefix, Value};

/// Something whose fields rules can read.
pub trait FieldSource<F> {
    fn value(&self, field: F) -> Option<Value>;

    /// The field as an integer when that is cheap to read; `None` means
    /// "ask [`FieldSource::value`]" (absent, not an integer, or no shortcut).
    #[inline]
    fn uint(&self, _field: F) -> Option<u64> {
        None
    }
}

impl FieldSource<Field> for Record {
    #[inline]
    fn value(&self, field: Field) -> Option<Value> {
        self.get(field)
    }

    #[inline]
    fn uint(&self, field: Field) -> Option<u64> {
        self.get_uint(field)
    }
}

impl FieldSource<GroupField> for Group {
    #[inline]
    fn value(&self, field: GroupField) -> Option<Value> {
        self.get(field)
    }
}

/// Evaluate a rule tree. Absent fields make comparisons false, so `NOT` of
/// a comparison with an absent field is true.
pub fn eval_rule<F: Copy, S: FieldSource<F> + ?Sized>(rule: &Rule<F>, src: &S) -> bool {
    match rule {
        Rule::True => true,
        Rule::Cmp(c) => eval_cmp(c, src),
        Rule::And(rules) => rules.iter().all(|r| eval_rule(r, src)),
        Rule::Or(rules) => rules.iter().any(|r| eval_rule(r, src)),
        Rule::Not(r) => !eval_rule(r, src),
    }
}

fn eval_cmp<F: Copy, S: FieldSource<F> + ?Sized>(c: &Cmp<F>, src: &S) -> bool {
    // The most common filter line, `port = 80`, on integers in place.
    if let (Operand::Field(f), Operand::Lit(Value::Uint(b))) = (&c.lhs, &c.rhs) {
        if let Some(a) = src.uint(*f) {
            return compare_uints(c.op, a, *b);
        }
    }
    let Some(lhs) = operand_value(&c.lhs, src) else {
        return false;
    };
    match &c.rhs {
        Operand::Prefix(p) => return prefix_test(c.op, &lhs, p),
        // The common `field op literal`: compare in place, no clone.
        Operand::Lit(v) => return compare_values(c.op, &lhs, v),
        _ => {}
    }
    match operand_value(&c.rhs, src) {
        Some(rhs) => compare_values(c.op, &lhs, &rhs),
        None => false,
    }
}

/// The value of an operand; `None` when a field is absent (or a bit
/// operation has a non-integer argument). A prefix has no single value.
fn operand_value<F: Copy, S: FieldSource<F> + ?Sized>(op: &Operand<F>, src: &S) -> Option<Value> {
    match op {
        Operand::Field(f) => src.value(*f),
        Operand::Lit(v) => Some(v.clone()),
        Operand::Set(s) => Some(Value::Set(s.clone())),
        Operand::Prefix(_) => None,
        Operand::BitAnd(a, b) => {
            let a = operand_value(a, src)?.as_u64()?;
            let b = operand_value(b, src)?.as_u64()?;
            Some(Value::Uint(a & b))
        }
        Operand::BitOr(a, b) => {
            let a = operand_value(a, src)?.as_u64()?;
            let b = operand_value(b, src)?.as_u64()?;
            Some(Value::Uint(a | b))
        }
    }
}

/// `value op prefix`: containment for `in` and `=`, its negation for `!=`;
/// an address is only inside a prefix of its own family.
pub fn prefix_test(op: CmpOp, value: &Value, prefix: &Prefix) -> bool {
    let inside = matches!(value, Value::Ip(ip) if prefix.contains(ip));
    match op {
        CmpOp::In | CmpOp::Eq => inside,
        CmpOp::Ne => !inside,
        _ => false,
    }
}

/// `lhs op rhs` for two present values under the language's rules.
#[inline]
pub fn compare_values(op: CmpOp, lhs: &Value, rhs: &Value) -> bool {
    match op {
        CmpOp::Eq => lhs.lang_eq(rhs),
        CmpOp::Ne => !lhs.lang_eq(rhs),
        CmpOp::Lt => lhs.compare(rhs) == Some(Ordering::Less),
        CmpOp::Le => matches!(lhs.compare(rhs), Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => lhs.compare(rhs) == Some(Ordering::Greater),
        CmpOp::Ge => matches!(lhs.compare(rhs), Some(Ordering::Greater | Ordering::Equal)),
        // Membership in a set; against a single value, membership in the
        // one-element set it stands for.
        CmpOp::In => match rhs {
            Value::Set(set) => lhs.is_in_set(set),
            other => lhs.lang_eq(other),
        },
    }
}

/// `a op b` for integers: what [`compare_values`] gives for two `Uint`s
/// (`in` a single value is equality).
#[inline]
fn compare_uints(op: CmpOp, a: u64, b: u64) -> bool {
    match op {
        CmpOp::Eq | CmpOp::In => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

/// The difference semantics of SPEC §2.4 for `reference op candidate delta D`:
/// bounds on `candidate − reference`. Non-numeric values never satisfy it.
pub fn delta_holds(op: CmpOp, reference: &Value, candidate: &Value, d: u64) -> bool {
    match (reference, candidate) {
        (Value::Uint(x), Value::Uint(y)) => {
            let diff = i128::from(*y) - i128::from(*x);
            diff_within(op, diff, i128::from(d))
        }
        _ => match (reference.as_number(), candidate.as_number()) {
            (Some(x), Some(y)) => diff_within_f(op, y - x, d as f64),
            _ => false,
        },
    }
}

fn diff_within(op: CmpOp, diff: i128, d: i128) -> bool {
    match op {
        CmpOp::Lt => diff < d,
        CmpOp::Le => diff <= d,
        CmpOp::Gt => -diff < d,
        CmpOp::Ge => -diff <= d,
        CmpOp::Eq => diff.abs() <= d,
        CmpOp::Ne => diff.abs() > d,
        CmpOp::In => false,
    }
}

fn diff_within_f(op: CmpOp, diff: f64, d: f64) -> bool {
    match op {
        CmpOp::Lt => diff < d,
        CmpOp::Le => diff <= d,
        CmpOp::Gt => -diff < d,
        CmpOp::Ge => -diff <= d,
        CmpOp::Eq => diff.abs() <= d,
        CmpOp::Ne => diff.abs() > d,
        CmpOp::In => false,
    }
}

/// A value as a hash key for equality joins: integral floats become
/// integers so that `lang_eq`-equal numbers hash alike. Candidates found
/// through a key are re-checked with `lang_eq`, so this only has to avoid
/// false negatives.
#[inline]
pub fn key_value(v: Value) -> Value {
    match v {
        Value::Float(f) if f.0.fract() == 0.0 && f.0 >= 0.0 && f.0 < u64::MAX as f64 => {
            Value::Uint(f.0 as u64)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordFields;
    use crate::record::CANONICAL;

    const OPS: [CmpOp; 7] = CmpOp::ALL;

    /// The integer shortcut decides as the general comparison does.
    #[test]
    fn compare_uints_agrees_with_compare_values() {
        let xs = [0, 1, 79, 80, 81, u64::MAX];
        for op in OPS {
            for a in xs {
                for b in xs {
                    let want = compare_values(op, &Value::Uint(a), &Value::Uint(b));
                    assert_eq!(compare_uints(op, a, b), want, "{a} {op:?} {b}");
                }
            }
        }
    }

    /// Where `get_uint` answers, it is the integer `get` gives.
    #[test]
    fn get_uint_agrees_with_get() {
        let rec = Record::from(RecordFields {
            rec_id: 7,
            srcport: Some(51234),
            dstport: Some(80),
            prot: Some(6),
            tcp_flags: Some(0x1b),
            tos: Some(4),
            bytes: Some(1834),
            packets: Some(3),
            stime: 1000,
            etime: 2500,
            ..RecordFields::default()
        });
        let mut answered = 0;
        for (f, ..) in CANONICAL {
            if let Some(u) = rec.get_uint(*f) {
                assert_eq!(rec.get(*f), Some(Value::Uint(u)), "{f:?}");
                answered += 1;
            }
        }
        assert_eq!(answered, 8);
        assert_eq!(Record::default().get_uint(Field::DstPort), None);
    }

    /// `dstport = 80` through the shortcut, and an absent field still
    /// compares false (so its negation is true).
    #[test]
    fn field_literal_rules() {
        let cmp = |op| {
            Rule::Cmp(Cmp {
                lhs: Operand::Field(Field::DstPort),
                op,
                rhs: Operand::Lit(Value::Uint(80)),
            })
        };
        let web = Record::from(RecordFields {
            dstport: Some(80),
            ..RecordFields::default()
        });
        assert!(eval_rule(&cmp(CmpOp::Eq), &web));
        assert!(!eval_rule(&cmp(CmpOp::Ne), &web));
        let none = Record::default();
        assert!(!eval_rule(&cmp(CmpOp::Eq), &none));
        assert!(!eval_rule(&cmp(CmpOp::Ne), &none));
        assert!(eval_rule(&Rule::Not(Box::new(cmp(CmpOp::Eq))), &none));
    }
}
