//! Export behaviour without ONNX Runtime: determinism, the manifest, errors on bad input, and the output
//! folder rules.

mod common;

use common::*;
use halo_core::manifest::{checkpoint, sha256_hex, Manifest, VerifyDigest};
use halo_export::onnx::ModelProto;
use halo_export::{export, read_checkpoint, write_manifest, ExportError, ExportOptions};
use prost::Message;
use std::path::Path;

fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    listing(dir)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

#[test]
fn exporting_twice_gives_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    tiny_checkpoint(&ck, false, 5);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    export(&ck, &a, &ExportOptions::default()).unwrap();
    export(&ck, &b, &ExportOptions::default()).unwrap();
    let (fa, fb) = (read_all(&a), read_all(&b));
    assert_eq!(
        fa.iter().map(|f| &f.0).collect::<Vec<_>>(),
        [
            "code_head.onnx",
            "code_module.f32",
            "manifest.json",
            "visit_embeddings.f32",
            "visit_transformer.onnx",
            "visit_transformer_step.onnx"
        ]
    );
    assert_eq!(fa, fb);

    // A different seed gives different weights, so the comparison above means something.
    let ck2 = tmp.path().join("ck2");
    tiny_checkpoint(&ck2, false, 6);
    let c = tmp.path().join("c");
    export(&ck2, &c, &ExportOptions::default()).unwrap();
    assert_ne!(read_all(&c)[0].1, fa[0].1);
}

#[test]
fn random_checkpoints_are_reproducible_and_take_the_code_bias() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tiny_config(false);
    let enc = encoding_for(&c);
    let bias: Vec<f32> = (0..c.code_vocab_size).map(|j| -(j as f32)).collect();
    for name in ["x", "y"] {
        halo_export::write_random_checkpoint(&tmp.path().join(name), &c, &enc, 9, Some(&bias)).unwrap();
    }
    let w = |n: &str| std::fs::read(tmp.path().join(n).join(checkpoint::WEIGHTS)).unwrap();
    assert_eq!(w("x"), w("y"));
    let ck = read_checkpoint(&tmp.path().join("x")).unwrap();
    let b2 = &ck.tensor("ehr_head.auto2.bias").data;
    assert_eq!(&b2[c.n_embd - 1..c.n_embd - 1 + bias.len()], bias.as_slice());
    assert_eq!(ck.tensor("transformer.h.1.ln_2.weight").data, vec![1.0; 8]);
    assert_eq!(ck.tensor("transformer.ln_f.bias").data, vec![0.0; 8]);
    assert_eq!(ck.config, c);
    assert_eq!(ck.encoding, enc);

    let too_long = vec![0.0; c.total_vocab_size + 1];
    let err = halo_export::write_random_checkpoint(&tmp.path().join("z"), &c, &enc, 9, Some(&too_long)).unwrap_err();
    assert!(err.to_string().contains("code_bias has 19 entries"), "{err}");
}

#[test]
fn manifest_describes_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (ck, out) = (tmp.path().join("ck"), tmp.path().join("model"));
    let config = tiny_checkpoint(&ck, false, 7);
    let m = export(&ck, &out, &ExportOptions::default()).unwrap();
    let read = Manifest::read(&out).unwrap();
    assert_eq!(read, m);
    assert_eq!(m.model, config);
    assert_eq!(m.verify, None);
    assert_eq!((m.ir_version, m.opset), (halo_export::IR_VERSION, halo_export::OPSET));
    // The checkpoint's data source does not travel into the model directory.
    assert_eq!(m.training.source, "");
    assert!(!std::fs::read_to_string(out.join("manifest.json"))
        .unwrap()
        .contains("random weights"));
    for f in [
        &m.files.visit_transformer,
        &m.files.visit_transformer_step,
        &m.files.code_head,
    ] {
        let bytes = std::fs::read(out.join(&f.name)).unwrap();
        assert_eq!(sha256_hex(&bytes), f.sha256, "{}", f.name);
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(model.ir_version, m.ir_version);
        assert_eq!(model.opset_import[0].version, m.opset);
    }

    // The caller can add the verify digest later.
    let mut with_verify = m.clone();
    with_verify.verify = Some(VerifyDigest {
        seed: 1,
        count: 1,
        records: vec!["ab".into()],
        visits: Vec::new(),
    });
    write_manifest(&out, &with_verify).unwrap();
    assert_eq!(Manifest::read(&out).unwrap(), with_verify);
}

#[test]
fn graph_inputs_and_outputs_follow_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let (ck, out) = (tmp.path().join("ck"), tmp.path().join("model"));
    tiny_checkpoint(&ck, false, 8);
    export(&ck, &out, &ExportOptions::default()).unwrap();
    let io = |file: &str| {
        let bytes = std::fs::read(out.join(file)).unwrap();
        let g = ModelProto::decode(bytes.as_slice()).unwrap().graph.unwrap();
        let names = |v: &[halo_export::onnx::ValueInfoProto]| v.iter().map(|x| x.name.clone()).collect::<Vec<_>>();
        (names(&g.input), names(&g.output))
    };
    assert_eq!(
        io("visit_transformer.onnx"),
        (vec!["visits".into()], vec!["history".into()])
    );
    assert_eq!(
        io("visit_transformer_step.onnx"),
        (
            vec![
                "embedded".into(),
                "past_key.0".into(),
                "past_value.0".into(),
                "past_key.1".into(),
                "past_value.1".into()
            ],
            vec![
                "history".into(),
                "present_key.0".into(),
                "present_value.0".into(),
                "present_key.1".into(),
                "present_value.1".into()
            ]
        )
    );
    assert_eq!(
        io("code_head.onnx"),
        (vec!["history".into(), "visit".into()], vec!["logits".into()])
    );
    // The step's input embeddings: code c's column of each embedding matrix, E values a code.
    let read = read_checkpoint(&ck).unwrap();
    let bytes = std::fs::read(out.join("visit_embeddings.f32")).unwrap();
    let value = |k: usize| f32::from_le_bytes(bytes[4 * k..4 * k + 4].try_into().unwrap());
    let mut names = vec!["transformer.vis_embed_mat.weight"];
    if read.config.seen_codes {
        names.push("transformer.seen_embed_mat.weight");
    }
    let (e, v) = (read.config.n_embd, read.config.total_vocab_size);
    assert_eq!(bytes.len(), names.len() * v * e * 4);
    for (table, name) in names.iter().enumerate() {
        let t = read.tensor(name);
        for c in [0, v / 2, v - 1] {
            for i in 0..e {
                assert_eq!(
                    value((table * v + c) * e + i),
                    t.data[i * v + c],
                    "{name} code {c} input {i}"
                );
            }
        }
    }
}

#[test]
fn training_json_is_optional() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    tiny_checkpoint(&ck, false, 10);
    std::fs::remove_file(ck.join(checkpoint::TRAINING)).unwrap();
    let read = read_checkpoint(&ck).unwrap();
    assert_eq!(read.training, Default::default());
}

/// Runs an export expected to fail and checks that nothing was left next to `out`.
fn failing_export(ck: &Path, out: &Path, opts: &ExportOptions) -> ExportError {
    let parent = out.parent().unwrap();
    let before = listing(parent);
    let err = export(ck, out, opts).unwrap_err();
    assert_eq!(listing(parent), before, "export left files behind after: {err}");
    err
}

#[test]
fn missing_folder_or_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("model");
    let err = failing_export(&tmp.path().join("nope"), &out, &ExportOptions::default());
    let msg = err.to_string();
    assert!(msg.contains("not a checkpoint folder"), "{msg}");
    assert!(msg.contains("nope"), "{msg}");

    let ck = tmp.path().join("ck");
    tiny_checkpoint(&ck, false, 11);
    std::fs::remove_file(ck.join(checkpoint::WEIGHTS)).unwrap();
    let msg = failing_export(&ck, &out, &ExportOptions::default()).to_string();
    assert!(
        msg.contains("not a checkpoint folder") && msg.contains("weights.safetensors is missing"),
        "{msg}"
    );
    assert!(!out.exists());
}

#[test]
fn truncated_weights_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (ck, out) = (tmp.path().join("ck"), tmp.path().join("model"));
    tiny_checkpoint(&ck, false, 12);
    let path = ck.join(checkpoint::WEIGHTS);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = failing_export(&ck, &out, &ExportOptions::default());
    assert!(matches!(err, ExportError::Weights { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("weights.safetensors") && msg.contains("truncated"),
        "{msg}"
    );

    std::fs::write(&path, b"12").unwrap();
    let msg = failing_export(&ck, &out, &ExportOptions::default()).to_string();
    assert!(msg.contains("not a readable safetensors file"), "{msg}");
}

#[test]
fn wrong_or_missing_tensors_name_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let (ck, out) = (tmp.path().join("ck"), tmp.path().join("model"));
    tiny_checkpoint(&ck, false, 13);
    // The weights of a model with a wider embedding, under this config.json.
    let mut wide = tiny_config(false);
    wide.n_embd = 12;
    let other = tmp.path().join("other");
    halo_export::write_random_checkpoint(&other, &wide, &encoding_for(&wide), 1, None).unwrap();
    std::fs::copy(other.join(checkpoint::WEIGHTS), ck.join(checkpoint::WEIGHTS)).unwrap();
    let err = failing_export(&ck, &out, &ExportOptions::default());
    let msg = err.to_string();
    assert!(
        msg.contains("`transformer.vis_embed_mat.weight` has shape [12, 18] but config.json expects [8, 18]"),
        "{msg}"
    );

    // A coarse model's weights lack the code module's.
    let coarse = tmp.path().join("coarse");
    tiny_checkpoint(&coarse, true, 1);
    std::fs::copy(coarse.join(checkpoint::WEIGHTS), ck.join(checkpoint::WEIGHTS)).unwrap();
    let msg = failing_export(&ck, &out, &ExportOptions::default()).to_string();
    assert!(
        msg.contains("tensor `ehr_head.auto1.weight` is missing (config.json expects shape [26, 26])"),
        "{msg}"
    );
}

#[test]
fn encoding_must_match_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let (ck, out) = (tmp.path().join("ck"), tmp.path().join("model"));
    tiny_checkpoint(&ck, false, 14);
    let mut c = tiny_config(false);
    c.code_vocab_size = 11;
    c.total_vocab_size = 17;
    let enc = encoding_for(&c);
    halo_core::fsutil::write_json_atomic(&ck.join(checkpoint::ENCODING), &enc).unwrap();
    let msg = failing_export(&ck, &out, &ExportOptions::default()).to_string();
    assert!(
        msg.contains("encoding.json") && msg.contains("17 tokens") && msg.contains("total_vocab_size 18"),
        "{msg}"
    );
}

#[test]
fn output_folder_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    tiny_checkpoint(&ck, false, 15);

    // A non-empty folder that is not a model directory is refused, even with overwrite.
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "mine").unwrap();
    let overwrite = ExportOptions {
        overwrite: true,
        ..Default::default()
    };
    let msg = failing_export(&ck, &busy, &overwrite).to_string();
    assert!(msg.contains("is not empty") && msg.contains("busy"), "{msg}");
    assert_eq!(listing(&busy), ["notes.txt"]);

    // An empty folder is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    export(&ck, &empty, &ExportOptions::default()).unwrap();
    assert!(empty.join("manifest.json").is_file());

    // A previous model needs overwrite, and is then replaced.
    let msg = failing_export(&ck, &empty, &ExportOptions::default()).to_string();
    assert!(msg.contains("--overwrite"), "{msg}");
    let ck2 = tmp.path().join("ck2");
    tiny_checkpoint(&ck2, true, 16);
    std::fs::write(empty.join("stale.txt"), "old").unwrap();
    let before = listing(tmp.path());
    let m = export(&ck2, &empty, &overwrite).unwrap();
    assert!(m.model.coarse);
    assert_eq!(Manifest::read(&empty).unwrap(), m);
    assert!(!empty.join("stale.txt").exists());
    assert_eq!(listing(tmp.path()), before, "no temporary folders left");

    // A file in the way.
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let msg = failing_export(&ck, &file, &overwrite).to_string();
    assert!(msg.contains("not a folder"), "{msg}");
}
