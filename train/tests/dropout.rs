//! Dropout draws from libtorch's one global generator, so this test has a test binary (a process) of its
//! own: tests of another binary running at the same time cannot draw between its seeding and its masks.

use halo_core::config::{ModelConfig, Preset};
use halo_core::encoding::{EncodedPatient, Encoding};
use halo_train::data::make_batch;
use halo_train::model::{Halo, Noise};
use tch::{nn, Device};

#[test]
fn dropout_acts_in_training_only_and_follows_the_seed() {
    tch::manual_seed(3);
    let enc = Encoding::plain(vec!["a".into(), "b".into()], vec!["L".into()], 46);
    let mut cfg = ModelConfig::new(Preset::Small, 2, 1);
    (cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.n_ctx, cfg.n_positions) = (8, 2, 2, 6, 6);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Halo::load(&vs.root(), &cfg);
    let a = EncodedPatient {
        labels: vec![2],
        visits: vec![vec![0], vec![0, 1], vec![1]],
        continues: false,
    };
    let batch = make_batch(&[&a], &enc, Device::Cpu);
    let plain = tch::no_grad(|| model.forward_batch(&batch));
    // Dropout 0 is the plain forward pass, bit for bit.
    let zero = tch::no_grad(|| model.forward_batch_with_noise(&batch, Noise::NONE));
    assert!(plain.equal(&zero));
    for noise in [
        Noise {
            dropout: 0.5,
            ..Noise::NONE
        },
        Noise {
            prefix_dropout: 0.5,
            ..Noise::NONE
        },
    ] {
        let noisy = |seed: i64| {
            tch::manual_seed(seed);
            tch::no_grad(|| model.forward_batch_with_noise(&batch, noise))
        };
        assert!(!noisy(1).equal(&plain), "{noise:?} changed nothing");
        assert!(noisy(1).equal(&noisy(1)), "the same seed gives other masks ({noise:?})");
        assert!(!noisy(1).equal(&noisy(2)));
    }
    // Hidden codes act only through the code module's input, the visit so far: the logit of the first code
    // (no code before it) is the plain one in every row, the last code's is not.
    tch::manual_seed(4);
    let hidden = tch::no_grad(|| {
        model.forward_batch_with_noise(
            &batch,
            Noise {
                prefix_dropout: 0.9,
                ..Noise::NONE
            },
        )
    });
    assert!(hidden.select(1, 0).equal(&plain.select(1, 0)));
    assert!(!hidden.select(1, 1).equal(&plain.select(1, 1)));
}
