//! Side outputs of process functions, and of operators that have none.

use weir::{Env, KeyedProcessFunction, OutputTag, ProcessContext};
use weir_tests::multiset;

#[test]
fn process_functions_split_records_into_main_and_side_outputs() {
    let env = Env::builder().cores(2).batch_size(8).build().expect("env");
    let odd = OutputTag::<String>::new("odd");
    let tag = odd.clone();
    let main =
        env.from_iter(0..200u64)
            .process(move |v: u64, ctx: &mut ProcessContext<'_, u64>| {
                if v.is_multiple_of(2) {
                    ctx.emit(v);
                } else {
                    ctx.output(&tag, format!("odd {v}"));
                }
            });
    let evens = main.collect();
    let odds = main.side_output(&odd).collect();
    env.execute().expect("job runs");
    assert_eq!(multiset(evens.take()), multiset((0..200).step_by(2)));
    assert_eq!(
        multiset(odds.take()),
        multiset((1..200).step_by(2).map(|v| format!("odd {v}")))
    );
}

#[derive(Clone)]
struct Big {
    tag: OutputTag<(u8, u64)>,
}

impl KeyedProcessFunction<u8, u64, u64> for Big {
    fn process(&mut self, key: &u8, v: u64, ctx: &mut ProcessContext<'_, u64>) {
        if v >= 90 {
            ctx.output(&self.tag, (*key, v));
        }
        ctx.emit(v);
    }
}

#[test]
fn keyed_process_functions_have_side_outputs_and_others_give_empty_ones() {
    let env = Env::builder().cores(2).build().expect("env");
    let tag = OutputTag::new("big");
    let main = env
        .from_iter(0..100u64)
        .key_by(|v| (*v % 3) as u8)
        .process(Big { tag: tag.clone() });
    let big = main.side_output(&tag).collect();
    let all = main.count();
    // A map has no side outputs: asking for one gives an empty stream, and the job ends.
    let none = env
        .from_iter(0..10u64)
        .map(|v| v + 1)
        .side_output(&tag)
        .count();
    env.execute().expect("job runs");
    assert_eq!(all.count(), 100);
    assert_eq!(
        multiset(big.take()),
        multiset((90..100u64).map(|v| ((v % 3) as u8, v)))
    );
    assert_eq!(none.count(), 0);
}

/// Pairs nothing: passes left records on, sends right ones to a side output, and also emits a
/// side record from a timer (so timers reach side outputs too).
#[derive(Clone)]
struct Split {
    tag: OutputTag<(u8, u64)>,
}

impl weir::KeyedCoProcessFunction<u8, u64, u64, u64> for Split {
    fn process_left(&mut self, _: &u8, v: u64, ctx: &mut ProcessContext<'_, u64>) {
        ctx.emit(v);
    }
    fn process_right(&mut self, key: &u8, v: u64, ctx: &mut ProcessContext<'_, u64>) {
        ctx.output(&self.tag, (*key, v));
        ctx.register_event_time_timer(1_000);
    }
    fn on_timer(&mut self, key: &u8, _: weir::Timestamp, ctx: &mut ProcessContext<'_, u64>) {
        ctx.output(&self.tag, (*key, u64::MAX));
    }
}

#[test]
fn co_process_functions_have_side_outputs() {
    let env = Env::builder().cores(2).batch_size(8).build().expect("env");
    let tag = OutputTag::new("right");
    let left = env.from_iter(0..100u64).key_by(|v| (*v % 4) as u8);
    let right = env.from_iter(1000..1060u64).key_by(|v| (*v % 3) as u8);
    let main = left.connect(&right).process(Split { tag: tag.clone() });
    let side = main.side_output(&tag).collect();
    let out = main.collect();
    env.execute().expect("job runs");
    assert_eq!(multiset(out.take()), multiset(0..100));
    let expected = (1000..1060u64)
        .map(|v| ((v % 3) as u8, v))
        .chain((0..3u8).map(|k| (k, u64::MAX)));
    assert_eq!(multiset(side.take()), multiset(expected));
}
