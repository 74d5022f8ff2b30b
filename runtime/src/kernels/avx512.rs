//! placeholder
use super::act::Q8Act;
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512(());
impl Avx512 {
    pub(crate) fn detect() -> Option<Avx512> { None }
    pub(crate) fn rows(self, w: &super::Matrix<'_>, x: &[f32], a: &[Q8Act], out: &mut super::OutRows<'_>) { super::scalar::rows(w, x, a, out) }
    pub(crate) fn quantize(self, x: &[f32], out: &mut [Q8Act]) { super::act::quantize(x, out) }
}
