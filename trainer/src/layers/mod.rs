//! One file per op, forward and backward side by side (llm.c style). Shapes are given
//! in B (batch), T (time), C (channels), H (heads), V (vocabulary).
//! Design choice: every backward *adds* into its gradient outputs (`+=`), parameters
//! and activations alike, so branches that meet (residuals, tied embeddings) need no
//! extra buffers; the caller zeroes gradients before a step.

/// Elements per rayon task in the element-wise ops: large enough that the split costs
/// nothing next to the work and the inner loop vectorises, small enough to balance.
pub const CHUNK: usize = 1 << 13;

pub mod attention;
pub mod dropout;
pub mod embedding;
pub mod geglu;
pub mod gelu;
pub mod layernorm;
pub mod linear;
pub mod relu;
pub mod residual;
pub mod rmsnorm;
pub mod rope;
pub mod softmax_ce;
pub mod swiglu;

#[cfg(test)]
pub mod testutil;
