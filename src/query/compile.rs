//! Statements → [`Plan`]: collects definitions, resolves the wiring,
//! compiles every stage and assembles the branches (SPEC §2).

use std::collections::HashMap;
use std::sync::Arc;

use crate::query::ast::{self, GItem, MItem, Name, Span, Stmt, Wire, WireElem, WireHead};
use crate::query::diag::{Diagnostics, Sink};
use crate::query::merger::{compile_merger, BranchInfo};
use crate::query::parse::parse;
use crate::query::plan::{BranchPlan, FilterPlan, GroupFilterPlan, GroupSchema, MergerPlan, Plan};
use crate::query::rules::{compile_lines, GroupFields, RecordFields, Taint};
use crate::query::schema::{compile_grouper, singleton_schema, CompiledGrouper};
use crate::query::wiring::{self, BranchSpec, Kind, StageNames};

/// Compile one query. `query_name` names the plan, `file_label` prefixes
/// every diagnostic.
pub fn compile_source(
    query_name: &str,
    file_label: &str,
    source: &str,
) -> Result<Plan, Diagnostics> {
    let mut sink = Sink::new(file_label, source);
    let parsed = parse(source, &mut sink);
    // A statement lost to a syntax error would make every use of its name
    // look unknown; report the syntax errors alone then.
    let plan = if parsed.complete {
        build(query_name, source, &parsed.stmts, &mut sink)
    } else {
        None
    };
    match plan {
        Some(p) if !sink.has_errors() => Ok(p),
        _ => {
            if !sink.has_errors() {
                sink.error(Span::new(0, 0), "the query could not be compiled");
            }
            Err(sink.finish())
        }
    }
}

/// Definitions by statement kind, in source order.
#[derive(Default)]
struct Defs<'a> {
    splitter: Option<&'a Name>,
    filters: Vec<(&'a Name, &'a [ast::Rule])>,
    groupers: Vec<(&'a Name, &'a [GItem])>,
    groupfilters: Vec<(&'a Name, &'a [ast::Rule])>,
    mergers: Vec<(&'a Name, &'a [MItem])>,
    ungroupers: Vec<&'a Name>,
    wires: Vec<&'a Wire>,
}

fn line_of(source: &str, at: usize) -> usize {
    source.get(..at).map_or(0, |s| s.matches('\n').count()) + 1
}

fn check_dup<'a>(
    kind: &str,
    name: &Name,
    mut existing: impl Iterator<Item = &'a Name>,
    source: &str,
    sink: &mut Sink<'_>,
) {
    if let Some(first) = existing.find(|n| n.text == name.text) {
        sink.error_help(
            name.span,
            format!("duplicate {kind} '{}'", name.text),
            Some(format!(
                "{kind} '{}' is first defined on line {}",
                name.text,
                line_of(source, first.span.start)
            )),
        );
    }
}

fn collect<'a>(stmts: &'a [Stmt], source: &str, sink: &mut Sink<'_>) -> Defs<'a> {
    let mut d = Defs::default();
    for s in stmts {
        match s {
            Stmt::Splitter(n) => match d.splitter {
                Some(first) => sink.error_help(
                    n.span,
                    format!("second splitter '{}'; a query has at most one", n.text),
                    Some(format!(
                        "the splitter is '{}' on line {}",
                        first.text,
                        line_of(source, first.span.start)
                    )),
                ),
                None => d.splitter = Some(n),
            },
            Stmt::Filter(n, r) => {
                check_dup("filter", n, d.filters.iter().map(|x| x.0), source, sink);
                d.filters.push((n, r));
            }
            Stmt::Grouper(n, g) => {
                check_dup("grouper", n, d.groupers.iter().map(|x| x.0), source, sink);
                d.groupers.push((n, g));
            }
            Stmt::GroupFilter(n, r) => {
                check_dup(
                    "groupfilter",
                    n,
                    d.groupfilters.iter().map(|x| x.0),
                    source,
                    sink,
                );
                d.groupfilters.push((n, r));
            }
            Stmt::Merger(n, m) => {
                check_dup("merger", n, d.mergers.iter().map(|x| x.0), source, sink);
                d.mergers.push((n, m));
            }
            Stmt::Ungrouper(n) => {
                check_dup("ungrouper", n, d.ungroupers.iter().copied(), source, sink);
                d.ungroupers.push(n);
            }
            Stmt::Wire(w) => d.wires.push(w),
            Stmt::Error => {}
        }
    }
    d
}

fn stage_names<'a>(d: &Defs<'a>) -> StageNames<'a> {
    let mut by_kind = HashMap::new();
    by_kind.insert(
        Kind::Filter,
        d.filters.iter().map(|x| x.0.text.as_str()).collect(),
    );
    by_kind.insert(
        Kind::Grouper,
        d.groupers.iter().map(|x| x.0.text.as_str()).collect(),
    );
    by_kind.insert(
        Kind::GroupFilter,
        d.groupfilters.iter().map(|x| x.0.text.as_str()).collect(),
    );
    by_kind.insert(
        Kind::Merger,
        d.mergers.iter().map(|x| x.0.text.as_str()).collect(),
    );
    by_kind.insert(
        Kind::Ungrouper,
        d.ungroupers.iter().map(|x| x.text.as_str()).collect(),
    );
    StageNames {
        splitter: d.splitter.or_else(|| implicit_splitter(&d.wires)),
        by_kind,
    }
}

/// Without a `splitter` statement, the first name used as the splitter
/// declares it, so that a misspelt splitter on a later line is still caught.
fn implicit_splitter<'a>(wires: &[&'a Wire]) -> Option<&'a Name> {
    wires
        .iter()
        .find_map(|w| match (&w.head, w.rest.as_slice()) {
            (WireHead::Branch { splitter, .. }, _) => Some(splitter),
            (WireHead::Elem(WireElem::Quoted(q, _)), [WireElem::Stage(s)]) if q == "input" => {
                Some(s)
            }
            _ => None,
        })
}

fn build(query_name: &str, source: &str, stmts: &[Stmt], sink: &mut Sink<'_>) -> Option<Plan> {
    let defs = collect(stmts, source, sink);
    let specs = wiring::resolve(&defs.wires, &stage_names(&defs), sink);
    if specs.is_empty() {
        sink.error_help(
            Span::new(source.len(), source.len()),
            "the query wires no branch",
            Some("add a wiring line such as 'S branch A -> f -> g -> U'".into()),
        );
    }
    let merger_name = check_merger_wiring(&specs, &defs, sink);

    let filters: HashMap<&str, Arc<FilterPlan>> = defs
        .filters
        .iter()
        .filter_map(|(n, rules)| {
            let rule = compile_lines(rules, &RecordFields, sink)?;
            let plan = FilterPlan {
                name: n.text.clone(),
                rule,
            };
            Some((n.text.as_str(), Arc::new(plan)))
        })
        .collect();
    let groupers: HashMap<&str, CompiledGrouper> = defs
        .groupers
        .iter()
        .map(|(n, items)| (n.text.as_str(), compile_grouper(n, items, sink)))
        .collect();

    let mut gf_cache = HashMap::new();
    let singleton = singleton_schema();
    let branches: Vec<BranchPlan> = specs
        .iter()
        .map(|spec| {
            branch_plan(
                spec,
                &defs,
                &filters,
                &groupers,
                &singleton,
                &mut gf_cache,
                sink,
            )
        })
        .collect();
    let merger = merger_name.and_then(|m| merger_plan(m, &branches, &groupers, &defs, sink));
    check_unused(&defs, &specs, merger_name, &singleton, sink);
    if sink.has_errors() {
        return None;
    }
    Some(Plan {
        name: query_name.to_string(),
        branches,
        merger,
    })
}

/// The merger every branch goes to, checking that several branches all
/// reach one merger.
fn check_merger_wiring<'a>(
    specs: &'a [BranchSpec],
    defs: &Defs<'_>,
    sink: &mut Sink<'_>,
) -> Option<&'a Name> {
    let mut chosen: Option<&Name> = None;
    for s in specs {
        match (s.stage(Kind::Merger), chosen) {
            (Some(m), Some(c)) if m.text != c.text => sink.error_help(
                m.span,
                format!(
                    "branch '{}' goes to merger '{}' but an earlier branch goes to '{}'",
                    s.name(),
                    m.text,
                    c.text
                ),
                Some("a query has one merger".into()),
            ),
            (Some(m), None) => chosen = Some(m),
            _ => {}
        }
    }
    if specs.len() > 1 {
        let target = chosen
            .map(|m| m.text.clone())
            .or_else(|| defs.mergers.first().map(|m| m.0.text.clone()))
            .unwrap_or_else(|| "M".into());
        for s in specs.iter().filter(|s| s.stage(Kind::Merger).is_none()) {
            if let Some(n) = &s.name {
                sink.error_help(
                    n.span,
                    format!("branch '{}' is not wired to a merger", n.text),
                    Some(format!(
                        "a query with several branches joins them: end the line with '-> {target}'"
                    )),
                );
            }
        }
    }
    chosen
}

/// Stages no branch uses: an unwired merger is a mistake (its branches
/// would never be joined); an unused group filter is still checked as far
/// as it can be without a schema.
fn check_unused(
    defs: &Defs<'_>,
    specs: &[BranchSpec],
    merger: Option<&Name>,
    singleton: &GroupSchema,
    sink: &mut Sink<'_>,
) {
    for (n, _) in &defs.mergers {
        if merger.is_none_or(|m| m.text != n.text) {
            sink.error_help(
                n.span,
                format!(
                    "merger '{}' is not wired: no branch line ends at it",
                    n.text
                ),
                Some(format!("end the branch lines with '-> {}'", n.text)),
            );
        }
    }
    let used = |name: &str| {
        specs
            .iter()
            .any(|s| s.stage(Kind::GroupFilter).is_some_and(|g| g.text == name))
    };
    for (n, rules) in &defs.groupfilters {
        if !used(&n.text) {
            let res = GroupFields {
                schema: singleton,
                grouper: None,
                taint: &Taint::All,
            };
            let _ = compile_lines(rules, &res, sink);
        }
    }
}

type GfCache = HashMap<(String, String), Option<Arc<GroupFilterPlan>>>;

fn branch_plan(
    spec: &BranchSpec,
    defs: &Defs<'_>,
    filters: &HashMap<&str, Arc<FilterPlan>>,
    groupers: &HashMap<&str, CompiledGrouper>,
    singleton: &Arc<GroupSchema>,
    gf_cache: &mut GfCache,
    sink: &mut Sink<'_>,
) -> BranchPlan {
    let filter = spec
        .stage(Kind::Filter)
        .and_then(|n| filters.get(n.text.as_str()).cloned());
    let grouper_name = spec.stage(Kind::Grouper).map(|n| n.text.as_str());
    let compiled = grouper_name.and_then(|g| groupers.get(g));
    let schema = compiled.map_or_else(|| singleton.clone(), |c| c.schema.clone());
    let groupfilter = spec.stage(Kind::GroupFilter).and_then(|gf| {
        let key = (gf.text.clone(), grouper_name.unwrap_or("").to_string());
        gf_cache
            .entry(key)
            .or_insert_with(|| {
                let (n, rules) = defs.groupfilters.iter().find(|x| x.0.text == gf.text)?;
                let res = GroupFields {
                    schema: &schema,
                    grouper: grouper_name,
                    taint: compiled.map_or(&Taint::Clean, |c| &c.taint),
                };
                let rule = compile_lines(rules, &res, sink)?;
                Some(Arc::new(GroupFilterPlan {
                    name: n.text.clone(),
                    rule,
                }))
            })
            .clone()
    });
    BranchPlan {
        name: spec.name().to_string(),
        filter,
        grouper: compiled.map(|c| c.plan.clone()),
        groupfilter,
        schema,
    }
}

fn merger_plan(
    m: &Name,
    branches: &[BranchPlan],
    groupers: &HashMap<&str, CompiledGrouper>,
    defs: &Defs<'_>,
    sink: &mut Sink<'_>,
) -> Option<MergerPlan> {
    let (name, items) = defs.mergers.iter().find(|x| x.0.text == m.text)?;
    let infos: Vec<BranchInfo<'_>> = branches
        .iter()
        .map(|b| BranchInfo {
            name: &b.name,
            schema: &b.schema,
            grouper: b.grouper.as_ref().map(|g| g.name.as_str()),
            taint: b
                .grouper
                .as_ref()
                .and_then(|g| groupers.get(g.name.as_str()))
                .map_or(&Taint::Clean, |c| &c.taint),
        })
        .collect();
    compile_merger(name, items, &infos, sink)
}
