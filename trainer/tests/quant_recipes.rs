//! `QuantPlan`'s mixtures against llama.cpp: for each K-quant mixture and three small
//! llama shapes, the dtype of every matrix must be the type `llama-quantize` gave the
//! same tensor. The expected types were recorded by running llama.cpp itself
//! (`scripts/recipe-fixtures.sh`, files in `tests/data/recipes/`), not by this code.

use llm_format::{DType, Mlp, ModelOptions, Norm, Positions};
use llm_train::import::gguf::canonical;
use llm_train::recipe::QuantPlan;
use std::collections::HashMap;

#[test]
fn mixtures_give_llama_quantize_types() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/recipes");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("recipe fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 27, "3 shapes x 9 mixtures");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("fixture");
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let mix = stem.rsplit_once('-').map(|(_, m)| m).unwrap_or("");
        let plan = QuantPlan::parse(mix).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let mut lines = text.lines();
        let dims: Vec<usize> = lines
            .next()
            .and_then(|l| l.rsplit_once(':'))
            .map(|(_, v)| v.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .expect("shape line");
        let opts = ModelOptions {
            vocab_size: dims[5],
            d_model: dims[1],
            n_layers: dims[0],
            n_heads: dims[3],
            n_kv_heads: dims[4],
            d_ff: dims[2],
            max_len: 256,
            positions: Positions::Rope,
            norm: Norm::RmsNorm,
            mlp: Mlp::SwiGlu,
            bias: false,
            tied_embeddings: false,
            norm_eps: 1e-5,
            rope_base: 10000.0,
            arch: Default::default(),
        };
        let want: HashMap<String, DType> = lines
            .map(|l| {
                let (name, ty) = l.split_once(' ').expect("name type");
                let c = canonical(&opts, name).unwrap_or_else(|| panic!("{stem}: {name}"));
                (
                    c,
                    DType::from_name(ty).unwrap_or_else(|| panic!("{stem}: {ty}")),
                )
            })
            .collect();
        let mut checked = 0;
        for slot in opts.tensor_layout().iter().filter(|s| s.matrix) {
            let cols = *slot.shape.last().unwrap();
            let got = plan.dtype_for(&slot.name, cols, &opts);
            assert_eq!(Some(&got), want.get(&slot.name), "{stem}: {}", slot.name);
            checked += 1;
        }
        assert_eq!(checked, want.len(), "{stem}: every matrix of the file");
    }
}
