//! Wiring lines → branches with their named stages (SPEC §2.6).

use std::collections::HashMap;

use crate::query::ast::{Name, Span, Wire, WireElem, WireHead};
use crate::query::diag::Sink;
use crate::query::suggest::did_you_mean;

/// Stage kinds in the order a branch line visits them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Filter,
    Grouper,
    GroupFilter,
    Merger,
    Ungrouper,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Filter => "filter",
            Kind::Grouper => "grouper",
            Kind::GroupFilter => "groupfilter",
            Kind::Merger => "merger",
            Kind::Ungrouper => "ungrouper",
        }
    }

    const ALL: [Kind; 5] = [
        Kind::Filter,
        Kind::Grouper,
        Kind::GroupFilter,
        Kind::Merger,
        Kind::Ungrouper,
    ];
}

/// Defined stage names by kind.
#[derive(Default)]
pub struct StageNames<'a> {
    pub splitter: Option<&'a Name>,
    pub by_kind: HashMap<Kind, Vec<&'a str>>,
}

impl StageNames<'_> {
    fn kinds_of(&self, name: &str) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| self.by_kind.get(k).is_some_and(|v| v.contains(&name)))
            .collect()
    }

    /// Every stage name, kind by kind: a fixed order, so that equally near
    /// suggestions are listed the same way on every run.
    fn all(&self) -> impl Iterator<Item = &str> {
        Kind::ALL
            .into_iter()
            .filter_map(|k| self.by_kind.get(&k))
            .flatten()
            .copied()
    }
}

/// One branch as wired: its name and the stage names in each position.
#[derive(Clone, Debug, Default)]
pub struct BranchSpec {
    pub name: Option<Name>,
    pub stages: HashMap<Kind, Name>,
}

impl BranchSpec {
    pub fn stage(&self, k: Kind) -> Option<&Name> {
        self.stages.get(&k)
    }

    pub fn name(&self) -> &str {
        self.name.as_ref().map_or("", |n| n.text.as_str())
    }
}

const ORDER_HELP: &str =
    "stages of a branch go filter -> grouper -> groupfilter -> merger -> ungrouper";

pub fn resolve(wires: &[&Wire], names: &StageNames<'_>, sink: &mut Sink<'_>) -> Vec<BranchSpec> {
    let mut branches: Vec<BranchSpec> = Vec::new();
    for w in wires {
        match &w.head {
            WireHead::Branch { splitter, branch } => {
                check_splitter(splitter, names, sink);
                if branches.iter().any(|b| b.name() == branch.text) {
                    sink.error(branch.span, format!("duplicate branch '{}'", branch.text));
                    continue;
                }
                let stages = branch_stages(&w.rest, names, sink);
                branches.push(BranchSpec {
                    name: Some(branch.clone()),
                    stages,
                });
            }
            WireHead::Elem(WireElem::Quoted(..)) => input_line(&w.rest, names, sink),
            WireHead::Elem(WireElem::Stage(n)) => tail_line(n, &w.rest, names, sink),
        }
    }
    branches
}

fn check_splitter(s: &Name, names: &StageNames<'_>, sink: &mut Sink<'_>) {
    if let Some(def) = names.splitter {
        if def.text != s.text {
            sink.error_help(
                s.span,
                format!("unknown splitter '{}'", s.text),
                Some(format!("the splitter is '{}'", def.text)),
            );
        }
    }
}

fn branch_stages(
    rest: &[WireElem],
    names: &StageNames<'_>,
    sink: &mut Sink<'_>,
) -> HashMap<Kind, Name> {
    let mut stages: HashMap<Kind, Name> = HashMap::new();
    let mut last: Option<(Kind, &Name)> = None;
    for (i, e) in rest.iter().enumerate() {
        match e {
            WireElem::Quoted(q, span) => {
                quoted_end(q, *span, i + 1 == rest.len(), sink);
            }
            WireElem::Stage(n) => {
                if let Some(k) = place(n, last, names, sink) {
                    stages.insert(k, n.clone());
                    last = Some((k, n));
                }
            }
        }
    }
    stages
}

/// The kind of stage `n` is at this point of a line, reporting unknown
/// names and stages out of order.
fn place(
    n: &Name,
    last: Option<(Kind, &Name)>,
    names: &StageNames<'_>,
    sink: &mut Sink<'_>,
) -> Option<Kind> {
    let kinds = names.kinds_of(&n.text);
    if kinds.is_empty() {
        let help = if names.splitter.is_some_and(|s| s.text == n.text) {
            Some("the splitter starts a line: 'S branch A -> ...'".to_string())
        } else {
            did_you_mean(&n.text, names.all())
        };
        sink.error_help(n.span, format!("unknown stage '{}'", n.text), help);
        return None;
    }
    let found = kinds
        .iter()
        .copied()
        .find(|k| last.is_none_or(|(l, _)| *k > l));
    match (found, last) {
        (Some(k), _) => Some(k),
        (None, Some((l, prev))) => {
            sink.error_help(
                n.span,
                format!(
                    "{} '{}' cannot come after {} '{}'",
                    kinds[0].word(),
                    n.text,
                    l.word(),
                    prev.text
                ),
                Some(ORDER_HELP.into()),
            );
            None
        }
        (None, None) => None,
    }
}

/// A quoted name is a placeholder for the output (SPEC §2.6: any string
/// literal); it may only end a line.
fn quoted_end(q: &str, span: Span, last: bool, sink: &mut Sink<'_>) {
    if !last {
        sink.error_help(
            span,
            format!("the output name \"{q}\" must end the line"),
            Some("a quoted name is the input at the start of a line ('\"input\" -> S') or the output at its end ('M -> U -> \"output\"')".into()),
        );
    }
}

/// `"input" -> S`: any string literal names the input (SPEC §2.6).
fn input_line(rest: &[WireElem], names: &StageNames<'_>, sink: &mut Sink<'_>) {
    match rest {
        [WireElem::Stage(s)] => check_splitter(s, names, sink),
        [first, ..] => {
            let span = match first {
                WireElem::Stage(n) => n.span,
                WireElem::Quoted(_, s) => *s,
            };
            sink.error_help(
                span,
                "the quoted input connects to the splitter only",
                Some("write '\"input\" -> S' and then 'S branch A -> ...'".into()),
            );
        }
        [] => {}
    }
}

/// `M -> U -> "output"` (and `U -> "output"`).
fn tail_line(head: &Name, rest: &[WireElem], names: &StageNames<'_>, sink: &mut Sink<'_>) {
    if names.splitter.is_some_and(|s| s.text == head.text) {
        sink.error_help(
            head.span,
            format!("expected 'branch NAME' after splitter '{}'", head.text),
            Some(format!("write '{} branch A -> ...'", head.text)),
        );
        return;
    }
    let first = WireElem::Stage(head.clone());
    let elems: Vec<&WireElem> = std::iter::once(&first).chain(rest.iter()).collect();
    let mut last: Option<(Kind, &Name)> = None;
    for (i, e) in elems.iter().enumerate() {
        match e {
            WireElem::Quoted(q, span) => quoted_end(q, *span, i + 1 == elems.len(), sink),
            WireElem::Stage(n) => {
                let Some(k) = place(n, last, names, sink) else {
                    return;
                };
                if k < Kind::Merger {
                    sink.error_help(
                        n.span,
                        format!("{} '{}' must be on a branch line", k.word(), n.text),
                        Some("write 'S branch A -> f -> g -> M'".into()),
                    );
                    return;
                }
                last = Some((k, n));
            }
        }
    }
}
