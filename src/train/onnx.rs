//! Writes the fused serving graph (DESIGN §6) as ONNX protobuf, and reads its weights back.
//!
//! One graph serves all three attributes: the [0, 1] normalisation is computed once, then
//! per attribute the VAE encoder, the reparameterised latent samples against a fixed
//! `[S, 256]` noise bank (an initializer, so outputs are deterministic and replays are
//! byte-identical), the ER heads averaged over S, the entropy of the averaged distribution,
//! and the STL value head. The decoder is not exported. Only standard opset-17 operators are
//! used, so any ONNX Runtime ≥ 1.12 runs it.
//!
//! Reading back ([`read`]) rebuilds [`ServingParams`] from the initializers: `emogate
//! calibrate` and the parity tests use it to run the candle reference on exactly the
//! weights in the file.

use std::collections::HashMap;
use std::path::Path;

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::arch::LATENT;
use super::serving::{AttributeParams, DenseParams, Normalizer, ServingParams, ENTROPY_FLOOR};
use super::TrainError;
use crate::attribute::{Attribute, PerAttribute, LIKERT_BINS};
use crate::model::contract::{output_name, OutputKind, INPUT_NAME};

/// ONNX operator set of the exported graph.
pub const OPSET: i64 = 17;
/// IR version matching opset 17 (ONNX 1.12).
const IR_VERSION: i64 = 8;

/// Incrementally builds a graph: named initializers and nodes with generated output names.
#[derive(Default)]
pub struct GraphBuilder {
    graph: GraphProto,
    counter: usize,
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), type_: AttributeType::INT.into(), i: v, ..Default::default() }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INTS.into(),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: DataType::FLOAT as i32,
        shape: Some(TensorShapeProto { dim, ..Default::default() }).into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() })
            .into(),
        ..Default::default()
    }
}

impl GraphBuilder {
    /// Adds a float32 initializer.
    pub fn init_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<i64>() as usize, data.len());
        self.graph.initializer.push(TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: DataType::FLOAT as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.into()
    }

    /// Adds an int64 initializer (shapes and axes).
    pub fn init_i64(&mut self, name: &str, data: &[i64]) -> String {
        self.graph.initializer.push(TensorProto {
            name: name.into(),
            dims: vec![data.len() as i64],
            data_type: DataType::INT64 as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.into()
    }

    /// Adds a node; its single output is named `out` or, if empty, generated from the op.
    pub fn node(&mut self, op: &str, inputs: &[&str], out: &str, attributes: Vec<AttributeProto>) -> String {
        self.counter += 1;
        let output = if out.is_empty() {
            format!("{}_{}", op.to_ascii_lowercase(), self.counter)
        } else {
            out.to_string()
        };
        self.graph.node.push(NodeProto {
            name: format!("n{}_{op}", self.counter),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            attribute: attributes,
            ..Default::default()
        });
        output
    }

    /// `act(x · W + b)` with the layer's weights as initializers `{prefix}_w`, `{prefix}_b`.
    pub fn dense(&mut self, x: &str, prefix: &str, p: &DenseParams, act: Option<&str>) -> String {
        let w = self.init_f32(&format!("{prefix}_w"), &[p.inputs as i64, p.outputs as i64], &p.w);
        let b = self.init_f32(&format!("{prefix}_b"), &[p.outputs as i64], &p.b);
        let mm = self.node("MatMul", &[x, &w], "", vec![]);
        let y = self.node("Add", &[&mm, &b], "", vec![]);
        match act {
            Some(op) => self.node(op, &[&y], "", vec![]),
            None => y,
        }
    }

    pub fn finish(self) -> GraphProto {
        self.graph
    }
}

/// Builds the serving graph as an ONNX model.
pub fn build_model(p: &ServingParams, metadata: &[(&str, String)]) -> ModelProto {
    let dims = p.dims() as i64;
    let s = p.mc_samples as i64;
    let mut g = GraphBuilder::default();
    let min = g.init_f32("norm_min", &[dims], &p.norm.min);
    let inv = g.init_f32("norm_inv_range", &[dims], &p.norm.inv_range);
    let zero = g.init_f32("const_zero", &[], &[0.0]);
    let one = g.init_f32("const_one", &[], &[1.0]);
    let half = g.init_f32("const_half", &[], &[0.5]);
    let floor = g.init_f32("entropy_floor", &[], &[ENTROPY_FLOOR]);
    let bank = g.init_f32("noise_bank", &[1, s, LATENT as i64], &p.noise);
    let axis1 = g.init_i64("axes_1", &[1]);
    let shape_latent = g.init_i64("shape_samples_latent", &[-1, LATENT as i64]);
    let shape_ns = g.init_i64("shape_n_s", &[-1, s]);
    let shape_ns7 = g.init_i64("shape_n_s_bins", &[-1, s, LIKERT_BINS as i64]);
    let shape_flat = g.init_i64("shape_n", &[-1]);

    let centred = g.node("Sub", &[INPUT_NAME, &min], "", vec![]);
    let scaled = g.node("Mul", &[&centred, &inv], "", vec![]);
    let xs = g.node("Clip", &[&scaled, &zero, &one], "features_scaled", vec![]);

    for a in Attribute::ALL {
        let ap = &p.attributes[a];
        let name = a.as_str();
        let mut h = xs.clone();
        for (k, layer) in ap.enc.iter().enumerate() {
            h = g.dense(&h, &format!("{name}_enc{k}"), layer, Some("Relu"));
        }
        let mu = g.dense(&h, &format!("{name}_mu"), &ap.mu, None);
        let logvar = g.dense(&h, &format!("{name}_logvar"), &ap.logvar, None);
        let half_lv = g.node("Mul", &[&logvar, &half], "", vec![]);
        let sigma = g.node("Exp", &[&half_lv], "", vec![]);
        let mu_u = g.node("Unsqueeze", &[&mu, &axis1], "", vec![]);
        let sigma_u = g.node("Unsqueeze", &[&sigma, &axis1], "", vec![]);
        let spread = g.node("Mul", &[&sigma_u, &bank], "", vec![]);
        let z3 = g.node("Add", &[&mu_u, &spread], &format!("{name}_latent_samples"), vec![]);
        let mut z = g.node("Reshape", &[&z3, &shape_latent], "", vec![]);
        for (k, layer) in ap.er.iter().enumerate() {
            z = g.dense(&z, &format!("{name}_er{k}"), layer, Some("Tanh"));
        }
        let c = g.dense(&z, &format!("{name}_consensus"), &ap.consensus, None);
        let c2 = g.node("Reshape", &[&c, &shape_ns], "", vec![]);
        g.node(
            "ReduceMean",
            &[&c2],
            &output_name(a, OutputKind::Consensus),
            vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)],
        );
        let logits = g.dense(&z, &format!("{name}_soft"), &ap.soft, None);
        let probs = g.node("Softmax", &[&logits], "", vec![attr_int("axis", -1)]);
        let p3 = g.node("Reshape", &[&probs, &shape_ns7], "", vec![]);
        let dist = g.node(
            "ReduceMean",
            &[&p3],
            &output_name(a, OutputKind::Distribution),
            vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)],
        );
        let guarded = g.node("Max", &[&dist, &floor], "", vec![]);
        let logp = g.node("Log", &[&guarded], "", vec![]);
        let plogp = g.node("Mul", &[&dist, &logp], "", vec![]);
        let sum = g.node("ReduceSum", &[&plogp, &axis1], "", vec![attr_int("keepdims", 0)]);
        g.node("Neg", &[&sum], &output_name(a, OutputKind::Entropy), vec![]);
        let mut v = xs.clone();
        for (k, layer) in ap.stl.iter().enumerate() {
            v = g.dense(&v, &format!("{name}_stl{k}"), layer, Some("Tanh"));
        }
        let vo = g.dense(&v, &format!("{name}_stl_out"), &ap.stl_out, None);
        g.node("Reshape", &[&vo, &shape_flat], &output_name(a, OutputKind::Value), vec![]);
    }

    let mut graph = g.finish();
    graph.name = "emogate_vae_er".into();
    graph.input.push(value_info(INPUT_NAME, &[None, Some(dims)]));
    for a in Attribute::ALL {
        for kind in OutputKind::ALL {
            let shape: Vec<Option<i64>> = if kind == OutputKind::Distribution {
                vec![None, Some(LIKERT_BINS as i64)]
            } else {
                vec![None]
            };
            graph.output.push(value_info(&output_name(a, kind), &shape));
        }
    }
    ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..Default::default()
        }],
        producer_name: "emogate".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph).into(),
        metadata_props: metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.to_string(),
                value: v.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Writes the serving graph to `path`; returns its bytes' sha256.
pub fn write(path: &Path, p: &ServingParams, metadata: &[(&str, String)]) -> Result<String, TrainError> {
    let bytes = build_model(p, metadata)
        .write_to_bytes()
        .map_err(|e| TrainError::Onnx { path: path.into(), reason: e.to_string() })?;
    std::fs::write(path, &bytes).map_err(TrainError::io(path))?;
    use sha2::Digest;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

fn tensor_f32(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::FLOAT as i32 {
        return None;
    }
    if !t.raw_data.is_empty() {
        Some(t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    } else {
        Some(t.float_data.clone())
    }
}

/// Reads the weights of a graph written by [`write`] back into [`ServingParams`].
pub fn read(path: &Path) -> Result<ServingParams, TrainError> {
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    let model = ModelProto::parse_from_bytes(&bytes)
        .map_err(|e| TrainError::Onnx { path: path.into(), reason: e.to_string() })?;
    let bad = |reason: String| TrainError::Onnx { path: path.into(), reason };
    let graph = model.graph.as_ref().ok_or_else(|| bad("no graph".into()))?;
    let inits: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    let get = |name: &str| -> Result<(Vec<f32>, Vec<i64>), TrainError> {
        let t = inits
            .get(name)
            .ok_or_else(|| bad(format!("no initializer `{name}` (not an emogate serving graph?)")))?;
        Ok((
            tensor_f32(t).ok_or_else(|| bad(format!("initializer `{name}` is not float32")))?,
            t.dims.clone(),
        ))
    };
    let (min, _) = get("norm_min")?;
    let (inv_range, _) = get("norm_inv_range")?;
    let (noise, bank_dims) = get("noise_bank")?;
    let mc_samples = match bank_dims[..] {
        [1, s, l] if l == LATENT as i64 => s as usize,
        _ => return Err(bad(format!("noise bank has shape {bank_dims:?}, expected [1, S, {LATENT}]"))),
    };
    let attributes = PerAttribute::try_from_fn(|a| {
        AttributeParams::from_lookup(|layer| {
            let (w, wd) = get(&format!("{a}_{layer}_w"))?;
            let (b, _) = get(&format!("{a}_{layer}_b"))?;
            match wd[..] {
                [i, o] => Ok(DenseParams { inputs: i as usize, outputs: o as usize, w, b }),
                _ => Err(bad(format!("`{a}_{layer}_w` is not a matrix"))),
            }
        })
    })?;
    Ok(ServingParams { norm: Normalizer { min, inv_range }, noise, mc_samples, attributes })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::train::arch::{ER_LAYERS, VAE_LAYERS};
    use rand::{Rng, SeedableRng};

    fn layer(rng: &mut rand_chacha::ChaCha8Rng, i: usize, o: usize) -> DenseParams {
        DenseParams {
            inputs: i,
            outputs: o,
            w: (0..i * o).map(|_| rng.random_range(-0.3f32..0.3)).collect(),
            b: (0..o).map(|_| rng.random_range(-0.1f32..0.1)).collect(),
        }
    }

    /// Small random serving parameters with the real latent width (cheap to run anywhere).
    pub(crate) fn small_params(dims: usize, samples: usize) -> ServingParams {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let attributes = PerAttribute::from_fn(|_| AttributeParams {
            enc: (0..VAE_LAYERS).map(|k| layer(&mut rng, if k == 0 { dims } else { 8 }, 8)).collect(),
            mu: layer(&mut rng, 8, LATENT),
            logvar: layer(&mut rng, 8, LATENT),
            er: (0..ER_LAYERS).map(|k| layer(&mut rng, if k == 0 { LATENT } else { 6 }, 6)).collect(),
            consensus: layer(&mut rng, 6, 1),
            soft: layer(&mut rng, 6, LIKERT_BINS),
            stl: (0..ER_LAYERS).map(|k| layer(&mut rng, if k == 0 { dims } else { 5 }, 5)).collect(),
            stl_out: layer(&mut rng, 5, 1),
        });
        ServingParams {
            norm: Normalizer { min: vec![-1.0; dims], inv_range: vec![0.5; dims] },
            noise: crate::train::serving::noise_bank(crate::model::NoiseBank::Gaussian, samples, 3).unwrap(),
            mc_samples: samples,
            attributes,
        }
    }

    #[test]
    fn graph_has_the_contract_inputs_outputs_and_no_decoder() {
        let p = small_params(4, 3);
        let m = build_model(&p, &[("emogate.mc_samples", "3".into())]);
        let g = m.graph.as_ref().unwrap();
        assert_eq!(g.input.len(), 1);
        assert_eq!(g.input[0].name, INPUT_NAME);
        let outs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(outs, crate::model::contract::output_names());
        // Every graph output is produced by exactly one node.
        for o in &outs {
            assert_eq!(g.node.iter().filter(|n| n.output.iter().any(|x| x == o)).count(), 1, "{o}");
        }
        assert!(g.initializer.iter().all(|t| !t.name.contains("dec")));
        assert_eq!(m.opset_import[0].version, OPSET);
    }

    #[test]
    fn weights_read_back_exactly() {
        let p = small_params(4, 3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        let sha = write(&path, &p, &[]).unwrap();
        assert_eq!(sha.len(), 64);
        assert_eq!(read(&path).unwrap(), p);
    }
}
