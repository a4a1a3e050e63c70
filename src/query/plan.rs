//! The compiled, checked, executable form of a query: what the compiler
//! produces and the only thing the engine accepts. Names are resolved to
//! indexes and field ids; no string lookups remain on the hot path.

use std::sync::Arc;

use crate::record::{Field, FieldType};
use crate::value::{Prefix, Value, ValueSet};

/// A compiled query.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The query's name: its file name without the extension.
    pub name: String,
    /// Branches in the order they are declared by the wiring lines.
    pub branches: Vec<BranchPlan>,
    /// `None` only for a single-branch query without a merger
    /// (then every group that passes the groupfilter is a match).
    pub merger: Option<MergerPlan>,
}

/// One branch: its own state in the engine, possibly shared stage definitions.
#[derive(Clone, Debug)]
pub struct BranchPlan {
    pub name: String,
    pub filter: Option<Arc<FilterPlan>>,
    pub grouper: Option<Arc<GrouperPlan>>,
    pub groupfilter: Option<Arc<GroupFilterPlan>>,
    /// The fields the branch's group records carry (for the group filter,
    /// the merger and the output), derived from the grouper (SPEC §1.2).
    pub schema: Arc<GroupSchema>,
}

/// A boolean rule tree. Rule lines of a stage are ANDed: a stage holds a
/// single `Rule::And` of its lines (or `Rule::True` when it has none).
#[derive(Clone, Debug, PartialEq)]
pub enum Rule<F> {
    True,
    Cmp(Cmp<F>),
    And(Vec<Rule<F>>),
    Or(Vec<Rule<F>>),
    Not(Box<Rule<F>>),
}

/// `lhs op rhs`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cmp<F> {
    pub lhs: Operand<F>,
    pub op: CmpOp,
    pub rhs: Operand<F>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Prefix containment or set membership; the right operand is a
    /// `Operand::Prefix`, `Operand::Set` or a set-valued field.
    In,
}

impl CmpOp {
    /// Every operator, `In` last (the orderings first).
    pub const ALL: [CmpOp; 7] = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
        CmpOp::In,
    ];
}

/// An argument of a comparison. `F` is the field reference type:
/// [`Field`] in filters, [`GroupField`] in group filters.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand<F> {
    Field(F),
    Lit(Value),
    Prefix(Prefix),
    Set(ValueSet),
    BitAnd(Box<Operand<F>>, Box<Operand<F>>),
    BitOr(Box<Operand<F>>, Box<Operand<F>>),
}

/// A record filter (SPEC §2.3).
#[derive(Clone, Debug)]
pub struct FilterPlan {
    pub name: String,
    pub rule: Rule<Field>,
}

/// A group filter: the same rules over group-record fields.
#[derive(Clone, Debug)]
pub struct GroupFilterPlan {
    pub name: String,
    pub rule: Rule<GroupField>,
}

/// A field of a group record (SPEC §1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupField {
    /// min member `stime`.
    Stime,
    /// max member `etime`.
    Etime,
    /// `etime - stime`.
    Duration,
    /// Number of members (the implicit `count`).
    Count,
    /// `Group::values[i]`: an implicit key field or an aggregate, in
    /// [`GroupSchema::fields`] slot order.
    Slot(usize),
    /// A field of the group's single member (groups that are single records).
    Record(Field),
}

/// The named fields of a branch's group records, with their types.
#[derive(Clone, Debug, Default)]
pub struct GroupSchema {
    /// Every queryable name (aliases included) with its field and type.
    /// `stime`, `etime`, `duration`/`td` and `count` are always present.
    pub names: Vec<(String, GroupField, FieldType)>,
    /// Number of `Slot`s (implicit keys first, then aggregates).
    pub slots: usize,
    /// Output name of each slot, in slot order (for JSON `fields`).
    pub slot_names: Vec<String>,
    /// True when every group is a single record (no grouper, or a grouper
    /// without modules): all record fields are group fields too.
    pub singleton: bool,
}

impl GroupSchema {
    pub fn lookup(&self, name: &str) -> Option<(GroupField, FieldType)> {
        self.names
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, f, t)| (*f, *t))
    }
}

/// A grouper (SPEC §2.4).
#[derive(Clone, Debug)]
pub struct GrouperPlan {
    pub name: String,
    /// Alternatives: a record joins a group if all rules of some module hold.
    /// Empty: every record is its own group.
    pub modules: Vec<ModulePlan>,
    /// Implicit key fields (a rule `x = x` without delta in every module),
    /// copied from the first member into slots `0..keys.len()`.
    pub keys: Vec<Field>,
    /// Aggregates, in slots `keys.len()..`.
    pub aggregates: Vec<AggregatePlan>,
}

#[derive(Clone, Debug)]
pub struct ModulePlan {
    pub name: String,
    /// All must hold. Empty: the module matches every record.
    pub rules: Vec<GroupRule>,
}

/// `left op right [delta D | rdelta D]`: `left` is read from the group's
/// reference record, `right` from the candidate record.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupRule {
    pub left: Field,
    pub op: CmpOp,
    pub right: Field,
    pub delta: Option<Delta>,
}

/// A delta bound: the difference semantics of SPEC §2.4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delta {
    /// The bound D, in the field's unit (ms for times and durations).
    pub amount: u64,
    /// Which member is the reference record.
    pub reference: Reference,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// The group's first member (plain rules and `delta`).
    First,
    /// The group's last-added member (`rdelta`).
    Last,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AggregatePlan {
    /// Output name: the `as` alias, or the field's own name for a plain field.
    pub name: String,
    pub func: AggFunc,
    pub field: Field,
    /// Module-qualified (`sum(g1.bytes)`): index into `GrouperPlan::modules`.
    pub module: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggFunc {
    Sum,
    Count,
    Min,
    Max,
    Avg,
    Union,
    BitOr,
    BitAnd,
    First,
    Last,
    /// A bare field: the value of the first member.
    Plain,
}

/// The merger (SPEC §2.5).
#[derive(Clone, Debug)]
pub struct MergerPlan {
    pub name: String,
    pub modules: Vec<MergeModule>,
    /// Index of the exported module in `modules`.
    pub export: usize,
}

#[derive(Clone, Debug)]
pub struct MergeModule {
    pub name: String,
    /// Branch indexes (into `Plan::branches`), in declared order: a tuple
    /// holds one group per branch, in this order.
    pub branches: Vec<usize>,
    /// Rule lines, ANDed.
    pub rules: Vec<MergeRule>,
}

/// A merger rule tree (lines ANDed at the top; `OR` within a line).
#[derive(Clone, Debug, PartialEq)]
pub enum MergeRule {
    Allen(AllenRule),
    Field(FieldRule),
    And(Vec<MergeRule>),
    Or(Vec<MergeRule>),
    Not(Box<MergeRule>),
}

/// `X op Y [delta D]` over group intervals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllenRule {
    /// Branch index of X.
    pub x: usize,
    pub op: AllenOp,
    /// Branch index of Y.
    pub y: usize,
    /// D in ms; `None` when the rule has no `delta` clause. The two differ
    /// only for `<`/`>`: `None` leaves the gap unbounded, while `Some(0)`
    /// bounds it to 0, so the relation never holds (SPEC §2.5). Every other
    /// relation reads `None` as D = 0.
    pub delta: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllenOp {
    Before,
    After,
    Meets,
    MetBy,
    Overlaps,
    OverlappedBy,
    Starts,
    StartedBy,
    During,
    Contains,
    Finishes,
    FinishedBy,
    Equals,
}

/// A field rule over group records of the module's branches or literals.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldRule {
    pub lhs: MergeOperand,
    pub op: CmpOp,
    pub rhs: MergeOperand,
    /// `delta D` / `rdelta D`: difference semantics with lhs as the reference.
    pub delta: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MergeOperand {
    /// `BRANCH.field`: branch index and the field of its group schema.
    Field {
        branch: usize,
        field: GroupField,
    },
    Lit(Value),
    Prefix(Prefix),
    Set(ValueSet),
}
