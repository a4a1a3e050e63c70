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
    speed_up_expected_tokens(&Path::new(&out_dir).join("flowy.rs"));
}

/// The head of the body LALRPOP generates for `__accepts`, which simulates
/// the parser on a copy of the whole state stack.
const ACCEPTS_HEAD: &str = "    {
        let mut __states = __states.to_vec();
        __states.extend(__error_state);
        loop {";

/// The same simulation on the borrowed stack plus a small overlay. Same
/// answers; no allocation.
const ACCEPTS_BODY: &str = "    {
        // Patched by build.rs: no copy of the state stack.
        let mut __base = __states.len();
        let mut __over: smallvec::SmallVec<[i16; 16]> = smallvec::SmallVec::new();
        __over.extend(__error_state);
        loop {
            let __top = match __over.last() {
                Some(__s) => *__s,
                None => __states[__base - 1],
            };
            let __action = match __opt_integer {
                None => __EOF_ACTION[__top as usize],
                Some(__integer) => __action(__top, __integer),
            };
            if __action == 0 { return false; }
            if __action > 0 { return true; }
            let (__to_pop, __nt) = match __simulate_reduce(-(__action + 1), core::marker::PhantomData::<(&())>) {
                __state_machine::SimulatedReduce::Reduce {
                    states_to_pop, nonterminal_produced
                } => (states_to_pop, nonterminal_produced),
                __state_machine::SimulatedReduce::Accept => return true,
            };
            let __from_over = __to_pop.min(__over.len());
            __over.truncate(__over.len() - __from_over);
            __base -= __to_pop - __from_over;
            let __top = match __over.last() {
                Some(__s) => *__s,
                None => __states[__base - 1],
            };
            __over.push(__goto(__top, __nt));
        }
    }
";

/// Every syntax error makes the generated parser list the expected tokens:
/// for each terminal it simulates the parse on a fresh copy of the state
/// stack. On fuzzed files, with hundreds of errors, those copies were a
/// sixth of a compile. Rewrite `__accepts` to simulate without copying;
/// when the generated code does not look as expected (another LALRPOP
/// version), leave it alone: it is only slower.
fn speed_up_expected_tokens(generated: &Path) {
    let Ok(code) = std::fs::read_to_string(generated) else {
        println!("cargo:warning=cannot read {}", generated.display());
        return;
    };
    let Some(fn_at) = code.find("fn __accepts<") else {
        println!("cargo:warning=no __accepts in the generated parser");
        return;
    };
    let body_at = code[fn_at..].find(ACCEPTS_HEAD).map(|i| fn_at + i);
    let end_at = body_at.and_then(|b| code[b..].find("\n    fn ").map(|i| b + i + 1));
    let (Some(body_at), Some(end_at)) = (body_at, end_at) else {
        println!("cargo:warning=unexpected __accepts in the generated parser; not patched");
        return;
    };
    let patched = format!("{}{ACCEPTS_BODY}{}", &code[..body_at], &code[end_at..]);
    if let Err(e) = std::fs::write(generated, patched) {
        println!("cargo:warning=cannot patch {}: {e}", generated.display());
    }
}
