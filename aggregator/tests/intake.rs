//! Each kind of bad update is refused with its own named error; the round keeps the good ones.

mod common;

use common::{cohort, model, round_config, update};
use hansa_aggregator::intake::{RoundIntake, UpdateRejection};
use hansa_protocol::{ParameterError, Scope};

fn intake() -> RoundIntake {
    RoundIntake::new(round_config(4), cohort(), model([0.0; 5]).spec())
}

#[test]
fn accepts_a_good_update_and_lists_the_missing() {
    let mut intake = intake();
    intake.offer("merchant-b", update(4, [0.1; 5], 10)).unwrap();
    assert_eq!(intake.accepted().len(), 1);
    assert_eq!(intake.missing(), ["merchant-a", "merchant-c"]);
}

#[test]
fn refuses_past_and_future_rounds() {
    let mut intake = intake();
    let err = intake
        .offer("merchant-a", update(3, [0.0; 5], 1))
        .unwrap_err();
    assert_eq!(
        err,
        UpdateRejection::PastRound {
            merchant: "merchant-a".into(),
            expected: 4,
            given: 3
        }
    );
    let err = intake
        .offer("merchant-a", update(5, [0.0; 5], 1))
        .unwrap_err();
    assert_eq!(
        err,
        UpdateRejection::FutureRound {
            merchant: "merchant-a".into(),
            expected: 4,
            given: 5
        }
    );
    assert!(intake.accepted().is_empty());
}

#[test]
fn refuses_a_merchant_outside_the_cohort() {
    let err = intake()
        .offer("merchant-z", update(4, [0.0; 5], 1))
        .unwrap_err();
    assert_eq!(
        err,
        UpdateRejection::NotInCohort {
            merchant: "merchant-z".into(),
            round: 4
        }
    );
    assert_eq!(err.merchant(), "merchant-z");
}

#[test]
fn refuses_a_second_update_and_keeps_the_first() {
    let mut intake = intake();
    intake.offer("merchant-a", update(4, [1.0; 5], 10)).unwrap();
    let err = intake
        .offer("merchant-a", update(4, [9.0; 5], 10))
        .unwrap_err();
    assert_eq!(
        err,
        UpdateRejection::Duplicate {
            merchant: "merchant-a".into(),
            round: 4
        }
    );
    assert_eq!(intake.accepted()["merchant-a"].delta.to_flat(), [1.0; 5]);
}

#[test]
fn refuses_wrong_names_and_shapes() {
    let mut renamed = update(4, [0.0; 5], 1);
    renamed.delta = hansa_protocol::ParameterSet::new();
    renamed
        .delta
        .push("user_embedding", vec![2, 2], vec![0.0; 4], Scope::Shared)
        .unwrap();
    renamed
        .delta
        .push("bias", vec![], vec![0.0], Scope::Shared)
        .unwrap();
    let err = intake().offer("merchant-a", renamed).unwrap_err();
    let UpdateRejection::Layout { source, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(source.to_string().contains("`user_embedding`"), "{err}");

    let mut reshaped = update(4, [0.0; 5], 1);
    reshaped.delta = hansa_protocol::ParameterSet::new();
    reshaped
        .delta
        .push("item_embedding", vec![4, 1], vec![0.0; 4], Scope::Shared)
        .unwrap();
    reshaped
        .delta
        .push("bias", vec![], vec![0.0], Scope::Shared)
        .unwrap();
    let err = intake().offer("merchant-a", reshaped).unwrap_err();
    assert!(err.to_string().contains("[4, 1]"), "{err}");
    assert!(err.to_string().contains("merchant-a"), "{err}");
}

#[test]
fn refuses_a_tensor_whose_values_do_not_fill_its_shape() {
    // Only possible for a set decoded from the wire, so build it through serde.
    let mut tensors = update(4, [0.0; 5], 1).delta.into_tensors();
    tensors[0].values.pop();
    let decoded = decode_without_checks(tensors);
    let mut short = update(4, [0.0; 5], 1);
    short.delta = decoded;
    let err = intake().offer("merchant-c", short).unwrap_err();
    assert_eq!(
        err,
        UpdateRejection::Length {
            merchant: "merchant-c".into(),
            round: 4,
            tensor: "item_embedding".into(),
            expected: 4,
            actual: 3
        }
    );
}

/// Decodes tensors as a peer's message would be decoded: without `ParameterSet::push`'s checks.
fn decode_without_checks(tensors: Vec<hansa_protocol::Tensor>) -> hansa_protocol::ParameterSet {
    #[derive(serde::Serialize)]
    struct Wire {
        tensors: Vec<hansa_protocol::Tensor>,
    }
    let bytes = postcard::to_allocvec(&Wire { tensors }).unwrap();
    postcard::from_bytes(&bytes).unwrap()
}

#[test]
fn refuses_nan_and_infinity() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let err = intake()
            .offer("merchant-b", update(4, [0.0, 0.0, 0.0, 0.0, bad], 1))
            .unwrap_err();
        assert_eq!(
            err,
            UpdateRejection::NonFinite {
                merchant: "merchant-b".into(),
                round: 4,
                source: ParameterError::NonFinite {
                    name: "bias".into(),
                    index: 0
                }
            }
        );
    }
}

#[test]
fn refuses_zero_examples() {
    let err = intake()
        .offer("merchant-b", update(4, [0.0; 5], 0))
        .unwrap_err();
    assert_eq!(
        err,
        UpdateRejection::NoExamples {
            merchant: "merchant-b".into(),
            round: 4
        }
    );
}
