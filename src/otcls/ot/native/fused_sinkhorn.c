/* otcls.ot._fused_sinkhorn: balanced Sinkhorn for a batch of small problems, one problem per thread at a
 * time, each kept in its core's cache (sinkhorn_kernel.h). Called through ctypes (otcls.ot.fused), which
 * releases the GIL: Python threads share a batch through the atomic counter `next`.
 *
 * The vectorised exp/log come from glibc's libmvec (GCC emits calls to them for the `omp declare simd`
 * declarations below under -fopenmp-simd); `target_clones` builds the hot function for AVX-512, AVX2 and the
 * baseline, chosen when the library is loaded. Other compilers and platforms get scalar libm calls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
float logf(float);
#pragma omp declare simd notinbranch
double exp(double);
#pragma omp declare simd notinbranch
double log(double);
#else
#define CLONES
#endif

#define PAD 16           /* entries: rows of K and Kᵀ start on 64-byte lines for float32 */
#define RELAX_START 5    /* plain updates before omega is estimated (otcls.ot.fixed_point.RELAX_START) */
#define OMEGA_MAX 1.9    /* otcls.ot.fixed_point.OMEGA_MAX */

/* Shared by every problem of a batch; the Python side (otcls.ot.fused) mirrors this layout. */
struct job {
  int B, n, m, max_iter, check_every, relax, history_rows;
  double tol;  /* < 0: run exactly max_iter updates */
  const void *cost, *log_prior, *eps, *a, *b;  /* (B, n, m), (B, n, m) or NULL, (B,), (B, n), (B, m) */
  void *beta, *alpha, *plan, *error, *history;  /* (B, m) in: start, out: result; (B, n); (B, n, m); (B,); (rows, B) */
  int *n_iter;  /* (B,) */
};

static inline int padded(int k) { return (k + PAD - 1) / PAD * PAD; }

/* Young's omega* = 2 / (1 + sqrt(1 - mu^2)) in [1, OMEGA_MAX] */
static double optimal_omega(double mu2) {
  mu2 = mu2 < 0 ? 0 : mu2 > 1 ? 1 : mu2;
  const double w = 2.0 / (1.0 + sqrt(1.0 - mu2));
  return w < 1 ? 1 : w > OMEGA_MAX ? OMEGA_MAX : w;
}

#define REAL float
#define SUFFIX f32
#define EXP expf
#define LOG logf
#define FABS fabsf
#include "sinkhorn_kernel.h"
#undef REAL
#undef SUFFIX
#undef EXP
#undef LOG
#undef FABS

#define REAL double
#define SUFFIX f64
#define EXP exp
#define LOG log
#define FABS fabs
#include "sinkhorn_kernel.h"

/* An importable module, so that Python finds the library's path; the functions above are its content. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_fused_sinkhorn", .m_size = -1};

PyMODINIT_FUNC PyInit__fused_sinkhorn(void) { return PyModule_Create(&module); }
