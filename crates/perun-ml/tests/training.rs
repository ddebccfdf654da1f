//! Real training on real data, with held-out accuracy, determinism, weights that
//! round-trip, and refusals, on every engine the build carries (flex always; LibTorch
//! with `--features libtorch`).

use std::ops::ControlFlow;

use perun_ml::backend::{Compute, Engine};
use perun_ml::{evaluate, predict, train, ModelSpec, TrainEvent};
use perun_seal::dataset::import_csv;
use perun_seal::Dataset;

const BC: &[u8] = include_bytes!("../../../examples/datasets/breast_cancer_wisconsin.csv");
const DIGITS: &[u8] = include_bytes!("../../../examples/datasets/digits_8x8.csv");
const BC_MLP: &[u8] = include_bytes!("../../../examples/models/breast-cancer-mlp.json");
const DIGITS_CNN: &[u8] = include_bytes!("../../../examples/models/digits-cnn.json");

/// 80 % to train on, 20 % held out (stratified, fixed seed).
fn split(csv: &[u8], label: &str) -> (Dataset, Dataset) {
    let ds = import_csv(csv, label).unwrap();
    let mut parts = ds.split(&[0.8, 0.2], 2021).unwrap();
    let test = parts.pop().unwrap();
    (parts.pop().unwrap(), test)
}

fn quiet(_: TrainEvent<'_>) -> ControlFlow<String> {
    ControlFlow::Continue(())
}

/// The CPU with each engine this build carries.
fn engines() -> impl Iterator<Item = Compute> {
    Engine::carried().iter().map(|&e| Compute::CpuWith(e))
}

#[test]
fn breast_cancer_mlp_reaches_95_percent_on_held_out_data() {
    for c in engines() {
        let (train_set, test_set) = split(BC, "diagnosis");
        let spec = ModelSpec::from_json(BC_MLP).unwrap();
        let out = train(&spec, None, &train_set, c, &mut quiet).unwrap();
        assert_eq!(out.metrics.len(), spec.training.epochs);
        let first = &out.metrics[0];
        let last = out.metrics.last().unwrap();
        assert!(last.train_loss < first.train_loss, "loss did not fall: {first:?} -> {last:?}");
        let e = evaluate(&spec, &out.weights, &test_set, c).unwrap();
        eprintln!("breast cancer held-out accuracy ({c:?}): {:.4} on {} samples", e.accuracy, e.samples);
        assert_eq!(e.samples, test_set.len());
        assert!(e.accuracy >= 0.95, "{c:?}: held-out accuracy {:.4} below 0.95", e.accuracy);
    }
}

#[test]
fn digits_cnn_reaches_95_percent_on_held_out_data() {
    for c in engines() {
        let (train_set, test_set) = split(DIGITS, "digit");
        let spec = ModelSpec::from_json(DIGITS_CNN).unwrap();
        let out = train(&spec, None, &train_set, c, &mut quiet).unwrap();
        let e = evaluate(&spec, &out.weights, &test_set, c).unwrap();
        eprintln!("digits held-out accuracy ({c:?}): {:.4} on {} samples", e.accuracy, e.samples);
        assert!(e.accuracy >= 0.95, "{c:?}: held-out accuracy {:.4} below 0.95", e.accuracy);
        assert_eq!(e.confusion.len(), 10);
    }
}

fn short(spec: &[u8], epochs: usize) -> ModelSpec {
    let mut s = ModelSpec::from_json(spec).unwrap();
    s.training.epochs = epochs;
    s
}

#[test]
fn a_fixed_seed_gives_the_same_weights() {
    for c in engines() {
        let (train_set, _) = split(BC, "diagnosis");
        let spec = short(BC_MLP, 3);
        let a = train(&spec, None, &train_set, c, &mut quiet).unwrap();
        let b = train(&spec, None, &train_set, c, &mut quiet).unwrap();
        let fp = |w: &[u8]| perun_ml::weights::fingerprint(w).unwrap();
        assert_eq!(fp(&a.weights), fp(&b.weights));
        let mut other = spec.clone();
        other.training.seed += 1;
        let c = train(&other, None, &train_set, c, &mut quiet).unwrap();
        assert_ne!(fp(&a.weights), fp(&c.weights));
    }
}

#[test]
fn trained_weights_predict_the_same_after_loading_and_continue_training() {
    for c in engines() {
        let (train_set, test_set) = split(BC, "diagnosis");
        let spec = short(BC_MLP, 5);
        let out = train(&spec, None, &train_set, c, &mut quiet).unwrap();
        let p1 = predict(&spec, &out.weights, &test_set.features, c).unwrap();
        let p2 = predict(&spec, &out.weights, &test_set.features, c).unwrap();
        assert_eq!(p1, p2);
        assert_eq!(p1.len(), test_set.len());
        assert!(p1.iter().all(|p| (p.iter().sum::<f32>() - 1.0).abs() < 1e-4));
        // Accuracy from `predict` agrees with `evaluate`.
        let hits = p1.iter().zip(&test_set.labels).filter(|(p, &l)| (p[1] > p[0]) == (l == 1)).count();
        let e = evaluate(&spec, &out.weights, &test_set, c).unwrap();
        assert!((hits as f64 / test_set.len() as f64 - e.accuracy).abs() < 1e-9);
        // Trained weights carry their spec: loaded alone, they predict the same.
        let served = perun_ml::Predictor::from_model(&out.weights, c).unwrap();
        assert_eq!(served.spec(), &spec);
        assert_eq!(served.predict(&test_set.features).unwrap(), p1);
        assert!(served.predict(&test_set.features[..7]).is_err());
        assert!(served.predict(&[f32::NAN; 30]).is_err());
        // The model owner's initial weights are where training starts.
        let more = train(&spec, Some(&out.weights), &train_set, c, &mut quiet).unwrap();
        assert!(more.metrics[0].train_loss < out.metrics[0].train_loss);
    }
}

#[test]
fn misfits_are_refused_before_training() {
    let (train_set, _) = split(DIGITS, "digit");
    let spec = short(BC_MLP, 1);
    let e = train(&spec, None, &train_set, Compute::Cpu, &mut quiet).err().unwrap().to_string();
    assert!(e.contains("input_shape"), "{e}");

    let (bc, _) = split(BC, "diagnosis");
    let out = train(&spec, None, &bc, Compute::Cpu, &mut quiet).unwrap();
    let mut other = spec.clone();
    other.layers[0] = serde_json::from_str(r#"{"type": "linear", "out": 64}"#).unwrap();
    let e = evaluate(&other, &out.weights, &bc, Compute::Cpu).unwrap_err().to_string();
    assert!(e.contains("another spec"), "{e}");
    let e = evaluate(&spec, b"not safetensors", &bc, Compute::Cpu).unwrap_err().to_string();
    assert!(e.contains("weights"), "{e}");
}

#[test]
fn the_caller_can_abort_training() {
    for c in engines() {
        let (train_set, _) = split(BC, "diagnosis");
        let spec = short(BC_MLP, 5);
        let mut steps = 0;
        let e = train(&spec, None, &train_set, c, &mut |ev| {
            if let TrainEvent::Step { .. } = ev {
                steps += 1;
            }
            if steps == 3 {
                ControlFlow::Break("revoked".into())
            } else {
                ControlFlow::Continue(())
            }
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("revoked"), "{e}");
        assert_eq!(steps, 3);
    }
}

#[test]
fn every_optimizer_and_loss_trains() {
    for c in engines() {
        let (train_set, test_set) = split(BC, "diagnosis");
        let base = ModelSpec::from_json(BC_MLP).unwrap();
        let variants = [
            (r#"{"kind": "sgd", "lr": 0.05, "momentum": 0.9}"#, "cross_entropy", 2),
            (r#"{"kind": "adamw", "lr": 0.003, "weight_decay": 0.01}"#, "cross_entropy", 2),
            (r#"{"kind": "adam", "lr": 0.003, "weight_decay": 0.001}"#, "binary_cross_entropy", 1),
            (r#"{"kind": "adam", "lr": 0.003}"#, "mse", 2),
        ];
        for (optimizer, loss, outputs) in variants {
            let mut spec = base.clone();
            spec.training.epochs = 15;
            spec.optimizer = serde_json::from_str(optimizer).unwrap();
            spec.loss = serde_json::from_value(serde_json::json!(loss)).unwrap();
            if let Some(l) = spec.layers.last_mut() {
                *l = serde_json::from_value(serde_json::json!({"type": "linear", "out": outputs})).unwrap();
            }
            let out = train(&spec, None, &train_set, c, &mut quiet).unwrap();
            let e = evaluate(&spec, &out.weights, &test_set, c).unwrap();
            assert!(e.accuracy >= 0.9, "{c:?}: {optimizer} with {loss}: held-out accuracy {:.3}", e.accuracy);
            if loss == "binary_cross_entropy" {
                let p = predict(&spec, &out.weights, &test_set.features[..30], c).unwrap();
                assert_eq!(p[0].len(), 2, "binary models report both class probabilities");
            }
        }
    }
}

#[test]
fn dp_sgd_trains_a_useful_model_within_its_epsilon() {
    let (train_set, test_set) = split(BC, "diagnosis");
    let mut spec = ModelSpec::from_json(BC_MLP).unwrap();
    spec.training.standardize = false;
    spec.training.validation_fraction = 0.0;
    spec.training.privacy = Some(perun_core::DpTarget { epsilon: 8.0, delta: 1e-5, max_grad_norm: 1.0 });
    for c in engines() {
        let out = train(&spec, None, &train_set, c, &mut quiet).unwrap();
        let spent = out.privacy.as_ref().unwrap();
        assert!(spent.epsilon <= 8.0 && spent.noise_multiplier > 0.5, "{c:?}: {spent:?}");
        let e = evaluate(&spec, &out.weights, &test_set, c).unwrap();
        eprintln!("DP-SGD at epsilon 8 ({c:?}): held-out accuracy {:.4}", e.accuracy);
        // 91-92 % in `perun bench dp`; the noise is drawn from the OS, so runs differ.
        assert!(e.accuracy >= 0.8, "{c:?}: DP-SGD held-out accuracy {:.3}", e.accuracy);
    }
}

/// The same trained weights give the same logits on every engine: a model trained on one
/// is served on the other.
#[test]
#[cfg(feature = "libtorch")]
fn the_engines_agree_on_the_same_weights() {
    for (spec, csv, label) in [(BC_MLP, BC, "diagnosis"), (DIGITS_CNN, DIGITS, "digit")] {
        let (train_set, test_set) = split(csv, label);
        let spec = short(spec, 2);
        let out = train(&spec, None, &train_set, Compute::CpuWith(Engine::Flex), &mut quiet).unwrap();
        let logits = |e| {
            perun_ml::Predictor::load(spec.clone(), &out.weights, Compute::CpuWith(e))
                .unwrap()
                .logits(&test_set.features)
                .unwrap()
        };
        let (flex, torch) = (logits(Engine::Flex), logits(Engine::LibTorch));
        assert_eq!(flex.len(), test_set.len());
        let worst =
            flex.iter().flatten().zip(torch.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        eprintln!("{}: largest logit difference flex vs libtorch {worst:e}", spec.name);
        assert!(worst <= 1e-4, "{}: logits differ by {worst}", spec.name);
        // And the other way round: trained on LibTorch, evaluated on flex.
        let out = train(&spec, None, &train_set, Compute::CpuWith(Engine::LibTorch), &mut quiet).unwrap();
        let a = evaluate(&spec, &out.weights, &test_set, Compute::CpuWith(Engine::LibTorch)).unwrap();
        let b = evaluate(&spec, &out.weights, &test_set, Compute::CpuWith(Engine::Flex)).unwrap();
        assert_eq!(a.confusion, b.confusion, "{}", spec.name);
    }
}

/// One SGD step from the same weights gives the same model on both engines: their
/// gradients agree, convolutions with stride and padding included (LibTorch's come from
/// ATen's `convolution_backward`, patches/burn-tch; flex's from Burn's own rewrite).
#[test]
#[cfg(feature = "libtorch")]
fn one_step_from_the_same_weights_gives_the_same_model_on_both_engines() {
    let (train_set, test_set) = split(DIGITS, "digit");
    let spec = ModelSpec::from_json(
        serde_json::json!({
            "schema": 1, "name": "strided", "input_shape": [1, 8, 8],
            "layers": [
                {"type": "conv2d", "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "relu"},
                {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "tanh"},
                {"type": "conv2d", "out_channels": 8, "kernel_size": 2}, {"type": "relu"},
                {"type": "flatten"}, {"type": "linear", "out": 10}
            ],
            "loss": "cross_entropy", "optimizer": {"kind": "sgd", "lr": 0.5},
            "training": {"epochs": 1, "batch_size": 4096, "seed": 3, "standardize": false}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let start = train(&spec, None, &train_set, Compute::CpuWith(Engine::Flex), &mut quiet).unwrap();
    let stepped = |e| train(&spec, Some(&start.weights), &train_set, Compute::CpuWith(e), &mut quiet).unwrap().weights;
    let (flex, torch) = (stepped(Engine::Flex), stepped(Engine::LibTorch));
    let logits = |w: &[u8]| {
        perun_ml::Predictor::load(spec.clone(), w, Compute::CpuWith(Engine::Flex))
            .unwrap()
            .logits(&test_set.features)
            .unwrap()
    };
    let (a, b, before) = (logits(&flex), logits(&torch), logits(&start.weights));
    let diff = |x: &[Vec<f32>], y: &[Vec<f32>]| {
        x.iter().flatten().zip(y.iter().flatten()).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max)
    };
    eprintln!(
        "after one step: flex vs libtorch {:e}; the step itself moved logits by {:e}",
        diff(&a, &b),
        diff(&a, &before)
    );
    assert!(diff(&a, &before) > 1e-2, "the step must move the model for the comparison to mean anything");
    assert!(diff(&a, &b) <= 1e-4, "one step apart by {}", diff(&a, &b));
}
