use std::path::Path;

fn main() {
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    lalrpop::Configuration::new()
        .set_in_dir("grammar")
        .set_out_dir(&out_dir)
        // Always regenerate, so that the patch below applies to fresh code.
        .force_build(true)
        .process()
        .expect("grammar/flowy.lalrpop must compile");
    let generated = Path::new(&out_dir).join("flowy.rs");
    let Ok(code) = std::fs::read_to_string(&generated) else {
        println!("cargo:warning=cannot read {}", generated.display());
        return;
    };
    let code = patch(
        &code,
        "fn __expected_tokens_from_states<",
        EXPECTED_HEAD,
        EXPECTED_BODY,
    );
    if let Err(e) = std::fs::write(&generated, code) {
        println!("cargo:warning=cannot patch {}: {e}", generated.display());
    }
}

/// The head of the body LALRPOP generates for the expected tokens: one
/// simulation per terminal.
const EXPECTED_HEAD: &str = "    {
        __TERMINAL.iter().enumerate().filter_map(|(index, terminal)| {
            if __accepts(None, __states, Some(index), core::marker::PhantomData::<(&())>) {";

/// The same answers from one simulation per distinct reduction: terminals
/// the top state reduces alike share the stack that reduction leaves.
const EXPECTED_BODY: &str = "    {
        // Patched by build.rs: terminals that reduce alike are simulated together.
        type __Terms = smallvec::SmallVec<[usize; 64]>;
        let mut __accepted = [false; __TERMINAL.len()];
        let mut __work: alloc::vec::Vec<(usize, smallvec::SmallVec<[i16; 16]>, __Terms)> =
            alloc::vec![(__states.len(), smallvec::SmallVec::new(), (0..__TERMINAL.len()).collect())];
        while let Some((__base, __over, __terms)) = __work.pop() {
            let __top = match __over.last() {
                Some(__s) => *__s,
                None => __states[__base - 1],
            };
            let mut __groups: smallvec::SmallVec<[(i16, __Terms); 4]> = smallvec::SmallVec::new();
            for __t in __terms {
                let __act = __action(__top, __t);
                if __act > 0 {
                    __accepted[__t] = true;
                } else if __act < 0 {
                    match __groups.iter_mut().find(|__g| __g.0 == __act) {
                        Some(__g) => __g.1.push(__t),
                        None => __groups.push((__act, smallvec::smallvec![__t])),
                    }
                }
            }
            for (__act, __group) in __groups {
                match __simulate_reduce(-(__act + 1), core::marker::PhantomData::<(&())>) {
                    __state_machine::SimulatedReduce::Reduce {
                        states_to_pop, nonterminal_produced
                    } => {
                        let mut __over = __over.clone();
                        let __from_over = states_to_pop.min(__over.len());
                        __over.truncate(__over.len() - __from_over);
                        let __base = __base - (states_to_pop - __from_over);
                        let __top = match __over.last() {
                            Some(__s) => *__s,
                            None => __states[__base - 1],
                        };
                        __over.push(__goto(__top, nonterminal_produced));
                        __work.push((__base, __over, __group));
                    }
                    __state_machine::SimulatedReduce::Accept => {
                        for __t in __group {
                            __accepted[__t] = true;
                        }
                    }
                }
            }
        }
        __TERMINAL
            .iter()
            .zip(__accepted)
            .filter_map(|(__t, __a)| if __a { Some(alloc::string::ToString::to_string(__t)) } else { None })
            .collect()
    }
";

/// Every syntax error makes the generated parser list the expected tokens:
/// for each terminal it simulates the parse on a fresh copy of the state
/// stack. On fuzzed files, with hundreds of errors, that was a sixth of a
/// compile (see benches/query_compile.rs). Replace the body of the function `name` when it starts with
/// `head` (the body ends at the function's closing brace); when the
/// generated code does not look as expected (another LALRPOP version),
/// leave it alone: it is only slower.
fn patch(code: &str, name: &str, head: &str, body: &str) -> String {
    let fn_at = code.find(name);
    let body_at = fn_at.and_then(|f| code[f..].find(head).map(|i| f + i));
    let end_at = body_at.and_then(|b| code[b..].find("\n    }\n").map(|i| b + i + 7));
    match (fn_at, body_at, end_at) {
        (Some(f), Some(b), Some(e)) if b - f < 400 => format!("{}{body}{}", &code[..b], &code[e..]),
        _ => {
            println!("cargo:warning=unexpected {name} in the generated parser; not patched");
            code.to_string()
        }
    }
}
