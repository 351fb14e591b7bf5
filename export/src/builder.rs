//! A small helper for writing ONNX graphs: initializers (with the weight precision applied), nodes with
//! unique output names, typed inputs and outputs, and serialisation with inline or external weights.

use crate::onnx::{
    attribute_type, data_type, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    DATA_LOCATION_EXTERNAL,
};
use crate::Precision;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};

/// ONNX IR version written (IR 10 pairs with opset 21; ONNX Runtime 1.17 and later read it).
pub const IR_VERSION: i64 = 10;
/// ai.onnx opset: LayerNormalization (17), Split with a `split` input (18), Gelu with
/// `approximate="tanh"` (20).
pub const OPSET: i64 = 21;

/// Initializers at least this large go to the external data file when a graph uses one.
const EXTERNAL_MIN_BYTES: usize = 1024;
/// Alignment of each tensor inside an external data file (lets a runtime map it).
const EXTERNAL_ALIGN: usize = 4096;

/// One dimension of a graph input or output.
#[derive(Debug, Clone, Copy)]
pub enum Dim {
    Fixed(usize),
    Param(&'static str),
}

/// An attribute value, for [`GraphBuilder::node`].
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Str(&'static str),
    Ints(Vec<i64>),
}

struct Initializer {
    name: String,
    dims: Vec<i64>,
    data_type: i32,
    bytes: Vec<u8>,
}

/// The serialised model: the `.onnx` bytes and, when weights are external, the data file's bytes.
pub struct Serialized {
    pub model: Vec<u8>,
    pub external_data: Option<Vec<u8>>,
}

pub struct GraphBuilder {
    name: String,
    precision: Precision,
    nodes: Vec<NodeProto>,
    initializers: Vec<Initializer>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    /// Every value and node name handed out, and the last suffix tried per hint.
    used: BTreeSet<String>,
    counters: BTreeMap<String, usize>,
    /// The current name scope (see [`GraphBuilder::scoped`]), as path parts.
    scope: Vec<String>,
}

impl GraphBuilder {
    pub fn new(name: &str, precision: Precision) -> GraphBuilder {
        GraphBuilder {
            name: name.to_string(),
            precision,
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            used: BTreeSet::new(),
            counters: BTreeMap::new(),
            scope: Vec::new(),
        }
    }

    /// Runs `f` with `name` appended to the name scope: every name it creates (nodes, weights, constants)
    /// starts with the scope, as checkpoint tensors are named by their module path
    /// (`transformer.h.0` then `attn` gives `transformer.h.0.attn.c_attn.weight`).
    pub fn scoped<T>(&mut self, name: &str, f: impl FnOnce(&mut GraphBuilder) -> T) -> T {
        self.scope.push(name.to_string());
        let result = f(self);
        self.scope.pop();
        result
    }

    /// `hint` inside the current scope.
    pub fn scoped_name(&self, hint: &str) -> String {
        if self.scope.is_empty() {
            hint.to_string()
        } else {
            format!("{}.{hint}", self.scope.join("."))
        }
    }

    /// A name not used before in this graph: `hint` in the current scope, else with `_1`, `_2`, ...
    pub fn unique(&mut self, hint: &str) -> String {
        self.unique_unscoped(&self.scoped_name(hint))
    }

    fn unique_unscoped(&mut self, hint: &str) -> String {
        let mut name = hint.to_string();
        while self.used.contains(&name) {
            let n = self.counters.entry(hint.to_string()).or_insert(0);
            *n += 1;
            name = format!("{hint}_{n}");
        }
        self.used.insert(name.clone());
        name
    }

    /// Reserves an exact name (graph inputs and outputs); panics on reuse, which is a bug in a graph.
    fn reserve(&mut self, name: &str) -> String {
        assert!(
            self.used.insert(name.to_string()),
            "name {name} used twice in graph {}",
            self.name
        );
        name.to_string()
    }

    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        let name = self.reserve(name);
        self.inputs.push(value_info(&name, data_type::FLOAT, dims));
        name
    }

    /// Declares a graph output; a node must then write it via [`GraphBuilder::node_to`].
    pub fn output(&mut self, name: &str, dims: &[Dim]) -> String {
        let name = self.reserve(name);
        self.outputs.push(value_info(&name, data_type::FLOAT, dims));
        name
    }

    /// A model parameter: stored in the export precision, and returned as an fp32 tensor name (through a
    /// Cast node when stored as fp16). Vectors (biases, LayerNorm) stay fp32: they are tiny and keep the
    /// fp16 export closer to fp32.
    pub fn weight(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> String {
        assert_eq!(dims.iter().product::<usize>(), values.len(), "{hint}");
        if self.precision == Precision::Fp16 && dims.len() >= 2 {
            let stored = self.unique(&format!("{hint}.fp16"));
            let bytes = values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect();
            self.push_initializer(stored.clone(), dims, data_type::FLOAT16, bytes);
            self.node("Cast", hint, &[&stored], &[("to", Attr::Int(data_type::FLOAT as i64))])
        } else {
            self.const_f32(hint, dims, values)
        }
    }

    /// An fp32 constant, whatever the precision.
    pub fn const_f32(&mut self, hint: &str, dims: &[usize], values: &[f32]) -> String {
        assert_eq!(dims.iter().product::<usize>(), values.len(), "{hint}");
        let name = self.unique(hint);
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(name.clone(), dims, data_type::FLOAT, bytes);
        name
    }

    /// An int64 constant; `dims` empty makes a scalar.
    pub fn const_i64(&mut self, hint: &str, dims: &[usize], values: &[i64]) -> String {
        assert_eq!(dims.iter().product::<usize>(), values.len(), "{hint}");
        let name = self.unique(hint);
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(name.clone(), dims, data_type::INT64, bytes);
        name
    }

    fn push_initializer(&mut self, name: String, dims: &[usize], data_type: i32, bytes: Vec<u8>) {
        self.initializers.push(Initializer {
            name,
            dims: dims.iter().map(|d| *d as i64).collect(),
            data_type,
            bytes,
        });
    }

    /// Adds a node with one output named after `hint`; returns the output name.
    pub fn node(&mut self, op: &str, hint: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let out = self.unique(hint);
        self.push_node(op, inputs, std::slice::from_ref(&out), attrs);
        out
    }

    /// Adds a node with `n` outputs named `hint_0..`; returns their names.
    pub fn node_n(&mut self, op: &str, hint: &str, n: usize, inputs: &[&str], attrs: &[(&str, Attr)]) -> Vec<String> {
        let outs: Vec<String> = (0..n).map(|i| self.unique(&format!("{hint}{i}"))).collect();
        self.push_node(op, inputs, &outs, attrs);
        outs
    }

    /// Adds a node writing an output declared with [`GraphBuilder::output`].
    pub fn node_to(&mut self, op: &str, output: &str, inputs: &[&str], attrs: &[(&str, Attr)]) {
        assert!(
            self.outputs.iter().any(|o| o.name == output),
            "{output} is not a declared output"
        );
        self.push_node(op, inputs, &[output.to_string()], attrs);
    }

    fn push_node(&mut self, op: &str, inputs: &[&str], outputs: &[String], attrs: &[(&str, Attr)]) {
        let name = self.unique_unscoped(&format!("node.{}", outputs[0]));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.to_vec(),
            name,
            op_type: op.to_string(),
            attribute: attrs.iter().map(|(k, v)| attribute(k, v)).collect(),
            ..Default::default()
        });
    }

    pub fn matmul(&mut self, hint: &str, a: &str, b: &str) -> String {
        self.node("MatMul", hint, &[a, b], &[])
    }

    pub fn add(&mut self, hint: &str, a: &str, b: &str) -> String {
        self.node("Add", hint, &[a, b], &[])
    }

    pub fn transpose(&mut self, hint: &str, x: &str, perm: &[i64]) -> String {
        self.node("Transpose", hint, &[x], &[("perm", Attr::Ints(perm.to_vec()))])
    }

    /// `shape` is the name of an int64 constant (0 keeps that input dimension).
    pub fn reshape(&mut self, hint: &str, x: &str, shape: &str) -> String {
        self.node("Reshape", hint, &[x, shape], &[])
    }

    pub fn softmax(&mut self, hint: &str, x: &str, axis: i64) -> String {
        self.node("Softmax", hint, &[x], &[("axis", Attr::Int(axis))])
    }

    /// Splits `x` along `axis` into parts of `sizes` (an int64 constant of `n` entries).
    pub fn split(&mut self, hint: &str, x: &str, sizes: &str, n: usize, axis: i64) -> Vec<String> {
        self.node_n("Split", hint, n, &[x, sizes], &[("axis", Attr::Int(axis))])
    }

    pub fn concat(&mut self, hint: &str, parts: &[&str], axis: i64) -> String {
        self.node("Concat", hint, parts, &[("axis", Attr::Int(axis))])
    }

    /// `condition ? a : b`, elementwise with broadcasting.
    pub fn select(&mut self, hint: &str, condition: &str, a: &str, b: &str) -> String {
        self.node("Where", hint, &[condition, a, b], &[])
    }

    /// LayerNormalization over the last axis.
    pub fn layer_norm(&mut self, hint: &str, x: &str, scale: &str, bias: &str, epsilon: f32) -> String {
        self.node(
            "LayerNormalization",
            hint,
            &[x, scale, bias],
            &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(epsilon))],
        )
    }

    /// GELU with the tanh approximation (GPT-2's).
    pub fn gelu_tanh(&mut self, hint: &str, x: &str) -> String {
        self.node("Gelu", hint, &[x], &[("approximate", Attr::Str("tanh"))])
    }

    /// Bytes of all initializers.
    pub fn initializer_bytes(&self) -> usize {
        self.initializers.iter().map(|i| i.bytes.len()).sum()
    }

    /// Serialises the model. When the initializers exceed `external_threshold` bytes, those of at least
    /// 1 KiB go to `data_file` (relative to the model file; each tensor 4 KiB aligned).
    pub fn finish(self, doc: &str, external_threshold: u64, data_file: &str) -> Serialized {
        let external = self.initializer_bytes() as u64 > external_threshold;
        let mut data: Vec<u8> = Vec::new();
        let mut initializer = Vec::with_capacity(self.initializers.len());
        for init in self.initializers {
            let mut t = TensorProto {
                dims: init.dims,
                data_type: init.data_type,
                name: init.name,
                ..Default::default()
            };
            if external && init.bytes.len() >= EXTERNAL_MIN_BYTES {
                let offset = data.len().next_multiple_of(EXTERNAL_ALIGN);
                data.resize(offset, 0);
                data.extend_from_slice(&init.bytes);
                t.data_location = DATA_LOCATION_EXTERNAL;
                t.external_data = vec![
                    entry("location", data_file),
                    entry("offset", &offset.to_string()),
                    entry("length", &init.bytes.len().to_string()),
                ];
            } else {
                t.raw_data = init.bytes;
            }
            initializer.push(t);
        }
        let model = ModelProto {
            ir_version: IR_VERSION,
            producer_name: "halo-export".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.to_string(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: self.name,
                initializer,
                input: self.inputs,
                output: self.outputs,
                ..Default::default()
            }),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            ..Default::default()
        };
        Serialized {
            model: model.encode_to_vec(),
            external_data: external.then_some(data),
        }
    }
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: key.into(),
        value: value.into(),
    }
}

fn attribute(name: &str, value: &Attr) -> AttributeProto {
    let mut a = AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.i = Some(*i);
            a.r#type = attribute_type::INT;
        }
        Attr::Float(f) => {
            a.f = Some(*f);
            a.r#type = attribute_type::FLOAT;
        }
        Attr::Str(s) => {
            a.s = Some(s.as_bytes().to_vec());
            a.r#type = attribute_type::STRING;
        }
        Attr::Ints(v) => {
            a.ints = v.clone();
            a.r#type = attribute_type::INTS;
        }
    }
    a
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                Dim::Param(p) => tensor_shape_proto::dimension::Value::DimParam(p.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut b = GraphBuilder::new("g", Precision::Fp32);
        assert_eq!(b.unique("x"), "x");
        assert_eq!(b.unique("x"), "x_1");
        assert_eq!(b.unique("x_2"), "x_2");
        assert_eq!(b.unique("x"), "x_3");
        b.input("visits", &[Dim::Param("batch")]);
        assert_eq!(b.unique("visits"), "visits_1");
    }

    #[test]
    fn fp16_weights_are_cast_and_vectors_stay_fp32() {
        let mut b = GraphBuilder::new("g", Precision::Fp16);
        let w = b.weight("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let v = b.weight("v", &[2], &[1.0, 2.0]);
        assert_eq!(w, "w");
        assert_eq!(v, "v");
        assert_eq!(b.initializer_bytes(), 4 * 2 + 2 * 4);
        assert_eq!(b.nodes.len(), 1);
        assert_eq!(b.nodes[0].op_type, "Cast");
        assert_eq!(b.nodes[0].input, ["w.fp16"]);
    }

    #[test]
    fn large_graphs_get_aligned_external_data() {
        let mut b = GraphBuilder::new("g", Precision::Fp32);
        b.const_f32("small", &[2], &[1.0, 2.0]);
        b.const_f32("a", &[300], &[0.5; 300]);
        b.const_f32("b", &[300], &[0.25; 300]);
        let s = b.finish("", 100, "g.onnx.data");
        let data = s.external_data.expect("external");
        assert_eq!(data.len(), 4096 + 1200);
        assert_eq!(&data[4096..4100], &0.25f32.to_le_bytes());
        let m = ModelProto::decode(s.model.as_slice()).unwrap();
        let g = m.graph.unwrap();
        assert_eq!(g.initializer[0].raw_data.len(), 8);
        assert_eq!(g.initializer[2].data_location, DATA_LOCATION_EXTERNAL);
        assert_eq!(g.initializer[2].external_data[1].value, "4096");
        assert!(g.initializer[2].raw_data.is_empty());
    }
}
