//! The drivers every kernel path shares, as macros so that each path compiles them
//! with its own `#[target_feature]`s: one weight row at a time (`each_row!`,
//! `rows_fn!`), register tiles of rows × activations (`drive!`), and prompt products
//! over weights unpacked once per chunk of rows (`packed_rows!`).

/// Rows `$out.r0..$out.r1` of `y = x · Wᵀ` one weight row at a time against every
/// activation: `$out.set(i, r, $dot(row_r, &$v[i·$len..(i+1)·$len]))`.
macro_rules! each_row {
    ($w:expr, $out:expr, $dot:path, $v:expr, $len:expr) => {{
        let (v, len) = ($v, $len);
        for r in $out.r0..$out.r1 {
            let row = $w.row(r);
            for i in 0..$out.n() {
                $out.set(i, r, $dot(row, &v[i * len..(i + 1) * len]));
            }
        }
    }};
}

/// Defines `fn $name(w, acts, out)`: rows `out.r0..out.r1` of `y = x · Wᵀ`, one
/// weight row at a time against every activation, with one dot function per dtype:
/// `dot(row_bytes, x_i)` for floats, `dot(row_bytes, a_i)` over 32-blocks (Q8_0/Q8_1
/// activations), `dot(row_bytes, k_i)` over 256-blocks (Q8_K activations). The match
/// has no wildcard, so a dtype added to the format's table fails to compile here until
/// every path lists its dot. The dot functions check their slice lengths. Shared by
/// every path, each with its own `#[target_feature]` attributes.
macro_rules! rows_fn {
    ($(#[$attr:meta])* $vis:vis fn $name:ident {
        float: $($f:ident => $fdot:path),+;
        q8: $($q:ident => $qdot:path),+;
        q8k: $($k:ident => $kdot:path),+ $(;)?
    }) => {
        $(#[$attr])*
        $vis fn $name(
            w: &$crate::kernels::Matrix<'_>,
            acts: &$crate::kernels::Acts<'_>,
            out: &mut $crate::kernels::OutRows<'_>,
        ) {
            use llm_format::DType;
            let cols = w.cols;
            match w.dtype {
                $( DType::$f => each_row!(w, out, $fdot, acts.x, cols), )+
                $( DType::$q => each_row!(w, out, $qdot, acts.a, cols / $crate::kernels::act::QK), )+
                $( DType::$k => each_row!(w, out, $kdot, acts.k, cols / $crate::kernels::act::QK_K), )+
            }
        }
    };
}

/// Every row of `out` against every activation, in tiles of `$rp` weight rows × `$tb`
/// activations (then 4-row and 1-row tiles for the leftover rows, 1-activation tiles
/// for the leftover activations): each weight vector loaded is used `$tb` times and
/// each activation vector `$rp` times. For one activation
/// (generation) the tiles are `$g1` rows × 1 instead: how many weight rows stream at
/// once is what matters there (PERF.md, "What changed since the 2026-11-28 figures").
#[allow(unused_macros)] // not every target has a path that uses it
macro_rules! drive {
    ($w:ident, $get:expr, $out:ident, $tile:ident, $rp:literal x $tb:literal, $g1:literal) => {{
        let n = $out.n();
        let get = $get;
        let mut r = $out.r0;
        macro_rules! group {
            ($r:literal) => {{
                let rows: [&[u8]; $r] = core::array::from_fn(|j| $w.row(r + j));
                let mut i = 0;
                while i + $tb <= n {
                    let v = $tile::<$r, $tb>(rows, core::array::from_fn(|k| get(i + k)));
                    for (j, vj) in v.iter().enumerate() {
                        for (k, vk) in vj.iter().enumerate() {
                            $out.set(i + k, r + j, *vk);
                        }
                    }
                    i += $tb;
                }
                while i < n {
                    let v = $tile::<$r, 1>(rows, [get(i)]);
                    for (j, vj) in v.iter().enumerate() {
                        $out.set(i, r + j, vj[0]);
                    }
                    i += 1;
                }
            }};
        }
        let g1: usize = $g1;
        while n == 1 && g1 > 1 && r + g1 <= $out.r1 {
            group!($g1);
            r += g1;
        }
        let rp: usize = $rp;
        while n > 1 && rp > 4 && r + rp <= $out.r1 {
            group!($rp);
            r += rp;
        }
        while (g1 > 1 || n > 1) && r + 4 <= $out.r1 {
            group!(4);
            r += 4;
        }
        while r < $out.r1 {
            group!(1);
            r += 1;
        }
    }};
}

/// The driver of a prompt product over unpacked quantised weights (`packed` in the
/// AVX2 path, the K-quants' `super_block_rows!`): rows of `$out` in groups of 4, each group's weights in
/// column chunks of up to `$kq` quads unpacked once (`$unpack`, with `$row` the weight
/// row's bytes, asserted to be `$rb` long, and `$g` the quad) — rows missing from the last group stay
/// `$zero` and add nothing — then `$sweep` runs the activation tiles over the chunk.
/// `$emit(i, v, t)` writes tile results `v[j][k]` for rows `r + j` and activations
/// `i + k < i + t` (set by the first chunk, added by later ones); `$after` runs once
/// per group (with `$r`, `$here` = rows in the group) after its chunks.
#[allow(unused_macros)] // not every target has a path that uses it
macro_rules! packed_rows {
    (
        $w:ident, $out:ident, nq: $nq:expr, kq: $kq:expr, zero: $zero:expr, width: $tw:expr,
        row_bytes: $rb:expr,
        unpack |$row:ident, $g:ident| $unpack:expr,
        sweep |$chunk:ident, $c0:ident, $c1:ident, $emit:ident| $sweep:block,
        after |$r:ident, $here:ident| $after:block
    ) => {{
        let nq: usize = $nq;
        let mut pack = [[$zero; $kq]; 4];
        let mut $r = $out.r0;
        while $r < $out.r1 {
            // The last group may have fewer than 4 rows: the missing ones stay zero
            // (scale 0, so they add nothing) and are not written.
            let $here = ($out.r1 - $r).min(4);
            for pj in pack.iter_mut().skip($here) {
                *pj = [$zero; $kq];
            }
            for $c0 in (0..nq).step_by($kq) {
                let $c1 = ($c0 + $kq).min(nq);
                for (j, pj) in pack.iter_mut().enumerate().take($here) {
                    let $row = $w.row($r + j);
                    assert_eq!($row.len(), $rb);
                    for ($g, u) in ($c0..$c1).zip(pj.iter_mut()) {
                        *u = $unpack;
                    }
                }
                let $chunk = &pack;
                let mut $emit = |i: usize, v: [[f32; $tw]; 4], t: usize| {
                    for (j, vj) in v.iter().enumerate().take($here) {
                        for (k, vk) in vj.iter().take(t).enumerate() {
                            if $c0 == 0 {
                                $out.set(i + k, $r + j, *vk);
                            } else {
                                $out.add(i + k, $r + j, *vk);
                            }
                        }
                    }
                };
                $sweep
            }
            $after
            $r += 4;
        }
    }};
}

/// The body of a super-block path's `rows` (`avx2_k`, `avx512_k`): generation one
/// weight row at a time (`dot_row`, each row prefetched ahead), prompts over 4-row
/// chunks of `KS` unpacked super-blocks swept by `tile_packed` in tiles of `TA`
/// activations. `dot_row`, `tile_packed`, `Super`, `KS` and `TA` are the calling
/// module's; `$unpack(p)` unpacks the super-block of type `$B` at `p`.
#[allow(unused_macros)] // not every target has a path that uses it
macro_rules! super_block_rows {
    ($w:ident, $k:ident, $out:ident, $B:ident, $unpack:expr) => {{
        let n = $out.n();
        let nb = $w.cols / QK_K;
        assert_eq!($k.len(), n * nb);
        let ys = |i: usize| &$k[i * nb..(i + 1) * nb];
        if n == 1 || nb == 0 {
            for r in $out.r0..$out.r1 {
                let row = $w.row(r);
                prefetch_ahead(row);
                for i in 0..n {
                    $out.set(i, r, dot_row::<$B>(row, ys(i)));
                }
            }
            return;
        }
        packed_rows!(
            $w, $out, nq: nb, kq: KS, zero: Super::zero(), width: TA,
            row_bytes: nb * $B::SIZE,
            unpack |row, g| {
                // SAFETY: super-block g < nb lies in the row (its length is asserted).
                unsafe { $unpack(row.as_ptr().add(g * $B::SIZE)) }
            },
            sweep |chunk, c0, c1, emit| {
                let yk = |i: usize| &$k[i * nb + c0..i * nb + c1];
                let mut i = 0;
                while i + TA <= n {
                    emit(i, tile_packed::<$B, TA>(chunk, core::array::from_fn(|t| yk(i + t))), TA);
                    i += TA;
                }
                while i < n {
                    emit(i, tile_packed::<$B, 1>(chunk, [yk(i)]), 1);
                    i += 1;
                }
            },
            after |r, here| {}
        );
    }};
}
