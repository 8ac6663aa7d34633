"""Random pooling windows for the pooling tests."""
from reference import pool as ref


def draw_window_case(rng, n, max_size=7, dilation=True):
    """Random valid sliding-window arguments: a non-empty output and no window in padding only;
    a dict with keys, in order, sizes, k, s, p, d, ceil_mode."""
    while True:
        sizes = [rng.randint(1, max_size) for _ in range(n)]
        k = [rng.randint(1, 4) for _ in range(n)]
        s = [rng.randint(1, 3) for _ in range(n)]
        p = [rng.randint(0, kk // 2) for kk in k]
        d = [rng.choice([1, 1, 2, 3]) if dilation else 1 for _ in range(n)]
        ceil_mode = rng.random() < 0.5
        fits = True
        for size, kk, ss, pp, dd in zip(sizes, k, s, p, d):
            starts = ref.window_starts(size, kk, ss, pp, dd, ceil_mode)
            fits = fits and bool(starts) and all(
                any(0 <= st + j * dd < size for j in range(kk)) for st in starts)
        if fits:
            return dict(sizes=sizes, k=k, s=s, p=p, d=d, ceil_mode=ceil_mode)
