/* One balanced (RE-)OT problem by scaling-domain Sinkhorn with over-relaxation, fused and cache-resident.
 *
 * Included twice by fused_sinkhorn.c, with REAL = float and REAL = double (SUFFIX, EXP, LOG, FABS set to
 * match). The kernel and its transpose live in a per-thread work buffer (padded to PAD entries per row) that
 * stays in the core's cache for all of the problem's iterations; each iteration reads both once:
 *     s = K v        as a sum of rows of Kᵀ scaled by v_j       (no horizontal reductions),
 *     u = a / s      (over-relaxed in the log domain),
 *     t = Kᵀ u       as a sum of rows of K scaled by u_i,
 * and, in the same pass, t' = Kᵀ (a / s), which gives the column error of the current iterate for free:
 * every iteration is a convergence check.
 */

#define NAME2(a, b) a##_##b
#define NAME(a, b) NAME2(a, b)

/* Solves problem p of the batch; returns the number of updates applied, writes the error of the returned
   iterate to jb->error[p]. */
CLONES
static int NAME(solve_one, SUFFIX)(const struct job *jb, int p, REAL *restrict work) {
  const int n = jb->n, m = jb->m, mp = padded(m), np_ = padded(n);
  const REAL *restrict C = (const REAL *)jb->cost + (size_t)p * n * m;
  const REAL *restrict logq = jb->log_prior ? (const REAL *)jb->log_prior + (size_t)p * n * m : NULL;
  const REAL *restrict a = (const REAL *)jb->a + (size_t)p * n;
  const REAL *restrict b = (const REAL *)jb->b + (size_t)p * m;
  REAL *restrict beta = (REAL *)jb->beta + (size_t)p * m;
  REAL *restrict alpha = (REAL *)jb->alpha + (size_t)p * n;
  REAL *restrict P = (REAL *)jb->plan + (size_t)p * n * m;
  REAL *restrict hist = (REAL *)jb->history;
  const REAL eps = ((const REAL *)jb->eps)[p], tol = (REAL)jb->tol;
  REAL *restrict K = work, *restrict KT = K + (size_t)n * mp;
  REAL *restrict v = KT + (size_t)m * np_, *restrict t = v + mp, *restrict tp = t + mp;
  REAL *restrict s = tp + mp, *restrict u = s + np_, *restrict logu = u + np_;

  /* K_ij = exp(min_j g_ij - g_ij), g = C / eps - log Q: every row's largest entry is 1; the shift
     min_j g_ij goes to alpha (the row potential), so the plan is unchanged. */
  const REAL inv = (REAL)1 / eps;
  for (int i = 0; i < n; i++) {
    const REAL *restrict Ci = C + (size_t)i * m;
    REAL *restrict Ki = K + (size_t)i * mp;
    REAL lo = (REAL)INFINITY;
    if (logq) {
      const REAL *restrict Li = logq + (size_t)i * m;
      #pragma omp simd reduction(min:lo)
      for (int j = 0; j < m; j++) { Ki[j] = Ci[j] * inv - Li[j]; lo = Ki[j] < lo ? Ki[j] : lo; }
    } else {
      #pragma omp simd reduction(min:lo)
      for (int j = 0; j < m; j++) { Ki[j] = Ci[j] * inv; lo = Ki[j] < lo ? Ki[j] : lo; }
    }
    #pragma omp simd
    for (int j = 0; j < m; j++) Ki[j] = EXP(lo - Ki[j]);
    for (int j = m; j < mp; j++) Ki[j] = 0;
    alpha[i] = lo;
  }
  for (int i0 = 0; i0 < n; i0 += PAD) {  /* in tiles of PAD rows: each row of Kᵀ gets a cache line at a time */
    const int i1 = i0 + PAD < n ? i0 + PAD : n;
    for (int j = 0; j < m; j++)
      for (int i = i0; i < i1; i++) KT[(size_t)j * np_ + i] = K[(size_t)i * mp + j];
  }
  for (int j = 0; j < m; j++)
    for (int i = n; i < np_; i++) KT[(size_t)j * np_ + i] = 0;
  REAL mass = 0;
  for (int i = 0; i < n; i++) mass += a[i];
  #pragma omp simd
  for (int j = 0; j < m; j++) v[j] = EXP(beta[j]);
  for (int j = m; j < mp; j++) v[j] = 0;

  const int span = jb->check_every / 2 > 1 ? jb->check_every / 2 : 1;
  REAL omega = 1, last_len = 0, ref_err = 0, err = (REAL)INFINITY;
  int k = 0, ref_at = -1, hist_at = 0;
  for (;; k++) {
    const int relaxed = omega > 1;
    memset(s, 0, sizeof(REAL) * (size_t)n);
    for (int j = 0; j < m; j++) {
      const REAL *restrict KTj = KT + (size_t)j * np_;
      const REAL vj = v[j];
      #pragma omp simd
      for (int i = 0; i < n; i++) s[i] += vj * KTj[i];
    }
    #pragma omp simd
    for (int i = 0; i < n; i++) {
      const REAL exact = LOG(a[i] / s[i]);
      logu[i] = relaxed ? logu[i] + omega * (exact - logu[i]) : exact;
      s[i] = a[i] / s[i];
      if (relaxed) u[i] = EXP(logu[i]);
    }
    memset(t, 0, sizeof(REAL) * (size_t)mp);
    if (relaxed) {  /* t = Kᵀ u for the update, tp = Kᵀ (a / K v) for the error */
      memset(tp, 0, sizeof(REAL) * (size_t)mp);
      for (int i = 0; i < n; i++) {
        const REAL *restrict Ki = K + (size_t)i * mp;
        const REAL ui = u[i], si = s[i];
        #pragma omp simd
        for (int j = 0; j < mp; j++) { t[j] += ui * Ki[j]; tp[j] += si * Ki[j]; }
      }
    } else {
      for (int i = 0; i < n; i++) {
        const REAL *restrict Ki = K + (size_t)i * mp;
        const REAL si = s[i];
        #pragma omp simd
        for (int j = 0; j < mp; j++) t[j] += si * Ki[j];
      }
      memcpy(tp, t, sizeof(REAL) * (size_t)mp);
    }
    err = 0;
    for (int j = 0; j < m; j++) err += FABS(v[j] * tp[j] - b[j]);
    err /= mass;
    if (k == ref_at) {
      ref_err = err;
    } else if (ref_at >= 0 && k - ref_at == span) {
      /* the rate lambda per step over the relaxed stretch refines mu by Young's relation; omega never falls,
         except to 1 where the error grew */
      const double lam = pow((double)err / (double)ref_err, 1.0 / span);
      if (lam > 1) {
        omega = 1;
      } else if (lam > 0) {
        const double mu = (lam + omega - 1) / (omega * sqrt(lam));
        const double better = optimal_omega(mu * mu);
        omega = better > omega ? (REAL)better : omega;
      }
      ref_at = k;
      ref_err = err;
    }
    if (k > 0 && k % jb->check_every == 0 && hist_at < jb->history_rows)
      hist[(size_t)(hist_at++) * jb->B + p] = err;
    if (!(err == err) || err == (REAL)INFINITY || (tol >= 0 && err <= tol) || k == jb->max_iter) break;

    /* column update (over-relaxed in the log domain once omega > 1) */
    REAL len = 0;
    #pragma omp simd reduction(max:len)
    for (int j = 0; j < m; j++) {
      const REAL exact = LOG(b[j] / t[j]);
      const REAL next = relaxed ? beta[j] + omega * (exact - beta[j]) : exact;
      const REAL d = FABS(next - beta[j]);
      len = d > len ? d : len;
      beta[j] = next;
      v[j] = EXP(next);
    }
    if (jb->relax && k + 1 == RELAX_START && last_len > 0) {
      /* Young: omega* from the plain step's contraction rate mu^2, estimated by the last two step lengths;
         the relaxed stretch starts at the next update, from the iterate of the next pass */
      omega = optimal_omega(len / last_len);
      ref_at = k + 1;
    }
    last_len = len;
  }
  /* plan = diag(a / K v) K diag(v) at the returned iterate (s holds a / K v from its pass) */
  for (int i = 0; i < n; i++) {
    const REAL *restrict Ki = K + (size_t)i * mp;
    REAL *restrict Pi = P + (size_t)i * m;
    const REAL si = s[i];
    #pragma omp simd
    for (int j = 0; j < m; j++) Pi[j] = Ki[j] * si * v[j];
    alpha[i] = LOG(si) + alpha[i];
  }
  ((REAL *)jb->error)[p] = err;
  return k;
}

int NAME(fused_sinkhorn, SUFFIX)(const struct job *jb, int *next) {
  const int mp = padded(jb->m), np_ = padded(jb->n);
  const size_t count = (size_t)jb->n * mp + (size_t)jb->m * np_ + 3 * (size_t)mp + 3 * (size_t)np_;
  REAL *work = aligned_alloc(64, (sizeof(REAL) * count + 63) / 64 * 64);
  if (!work) return -1;
  for (int p; (p = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED)) < jb->B;)
    jb->n_iter[p] = NAME(solve_one, SUFFIX)(jb, p, work);
  free(work);
  return 0;
}

#undef NAME
#undef NAME2
