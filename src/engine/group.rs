//! Group records (SPEC §1.2): what groupers produce and the merger joins.

use std::borrow::Cow;
use std::sync::Arc;

use crate::query::plan::GroupField;
use crate::record::{time_to_u64, Record, Time};
use crate::value::Value;

/// A closed group of one branch.
#[derive(Clone, Debug)]
pub struct Group {
    /// Index of the branch in `Plan::branches`.
    pub branch: usize,
    /// Unique within the branch, increasing in creation order.
    pub id: u64,
    /// min member `stime`.
    pub stime: Time,
    /// max member `etime`.
    pub etime: Time,
    /// Members in the order they joined (the first is the founding record).
    pub members: Vec<Arc<Record>>,
    /// Implicit keys then aggregates, in `GroupSchema` slot order.
    pub values: Vec<Option<Value>>,
}

impl Group {
    /// The value of a group field, `None` when absent.
    #[inline]
    pub fn get(&self, field: GroupField) -> Option<Value> {
        self.get_ref(field).map(Cow::into_owned)
    }

    /// Like [`Group::get`], but borrows stored slot values: readers that
    /// only compare or print (merger rules, group filters, output) then
    /// skip cloning, and for sets the atomic reference count updates on
    /// values the merger and output threads share.
    #[inline]
    pub fn get_ref(&self, field: GroupField) -> Option<Cow<'_, Value>> {
        let owned = |v: Value| Some(Cow::Owned(v));
        match field {
            GroupField::Stime => owned(Value::Uint(time_to_u64(self.stime))),
            GroupField::Etime => owned(Value::Uint(time_to_u64(self.etime))),
            // Saturating: hostile times (stime near i64::MIN, etime near
            // i64::MAX) must not overflow.
            GroupField::Duration => owned(Value::Uint(time_to_u64(
                self.etime.saturating_sub(self.stime),
            ))),
            GroupField::Count => owned(Value::Uint(self.members.len() as u64)),
            GroupField::Slot(i) => self.values.get(i)?.as_ref().map(Cow::Borrowed),
            GroupField::Record(f) => self.members.first()?.get(f).map(Cow::Owned),
        }
    }
}
