//! llm-train: training, import and export of .llm models.
//!
//! The CPU trainer core: [`config`] (hyper-parameters and presets), [`layers`] (one
//! file per op, forward next to backward), [`model`] (flat parameters named per the
//! file's tensor layout), [`backend`] (the ops the model calls; CPU reference here),
//! [`optim`] (AdamW, schedule, clipping), [`data`] and [`tokenize`] (llm.c shards,
//! char/byte/BPE), [`train`] and [`checkpoint`] (run folder, resume), [`runlock`] (one writer per run folder), [`export`]
//! (`.llm` writing), [`plot`] and [`viz`] (pictures), [`profile`] (time per backend op).

#![deny(missing_docs)]

pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod export;
pub mod export_gguf;
pub mod extend;
pub mod import;
pub mod layers;
pub mod lr_find;
pub mod quantize;
pub mod recipe;

pub mod cuda;
pub mod model;
pub mod optim;
pub mod plot;
pub mod profile;
pub mod rng;
pub mod runlock;
pub mod scalar;
pub mod sweep;
pub mod tokenize;
pub mod train;
pub mod viz;
