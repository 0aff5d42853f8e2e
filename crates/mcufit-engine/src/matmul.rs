//! The one GEMM entry point: a bounds-checked wrapper around `gemm::gemm` (f32, AVX-512 kernels
//! picked at run time). gemm splits the work over M and N only, never over the reduction K, and
//! its blocking does not depend on the thread count, so results are thread-count independent.

use gemm::{gemm, Parallelism};

/// Below this many multiply-adds a product runs on the calling thread (rayon hand-off costs more).
const PAR_WORK: usize = 1 << 16;

/// A strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// Row-major view with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        View { data, rs: cols, cs: 1 }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        View { data, rs: 1, cs: cols }
    }
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `dst[m x n] = lhs[m x k] · rhs[k x n]`, or `+=` when `acc`. `dst` is row-major with row
/// stride `dst_rs` (column stride 1).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(m: usize, n: usize, k: usize, dst: &mut [f32], dst_rs: usize, acc: bool, lhs: View, rhs: View) {
    let par = if m * n * k >= PAR_WORK { Parallelism::Rayon(0) } else { Parallelism::None };
    product(m, n, k, dst, dst_rs, acc, lhs, rhs, par);
}

/// [`matmul`] on the calling thread only (for products inside a parallel loop).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_seq(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    acc: bool,
    lhs: View,
    rhs: View,
) {
    product(m, n, k, dst, dst_rs, acc, lhs, rhs, Parallelism::None);
}

#[allow(clippy::too_many_arguments)]
fn product(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    acc: bool,
    lhs: View,
    rhs: View,
    par: Parallelism,
) {
    assert!(
        lhs.covers(m, k) && rhs.covers(k, n) && (m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len()),
        "matmul operands out of bounds: m={m} n={n} k={k}"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !acc {
            dst.chunks_mut(dst_rs).take(m).for_each(|r| r[..n].fill(0.0));
        }
        return;
    }
    // SAFETY: the assert above keeps every element gemm reads or writes inside the three slices,
    // and `dst` is a unique borrow, so it cannot alias `lhs` or `rhs`.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            acc,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}
