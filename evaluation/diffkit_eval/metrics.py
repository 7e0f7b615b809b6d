"""Every metric from one feature pass, each an `Estimate` with its N and an uncertainty.

FID, KID and the Inception-Score analogue come from torch-fidelity's feature-level functions;
precision/recall (same definition as torch-fidelity's, tested equal), density/coverage (Naeem et
al. 2020), the Vendi score (Friedman & Dieng 2023) and the memorisation figures (NN-distance ratio,
authenticity after Alaa et al. 2022) are computed here. Uncertainties: FID, Vendi and the medians by
bootstrap over the generated samples, KID by the spread over subsets, rates by their binomial standard error.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric

from diffkit.errors import DiffkitError

MIN_SAMPLES = 10
PR_K, DC_K = 3, 5
BOOTSTRAP_ROUNDS = 10
KID_SUBSETS = 50


@dataclass(frozen=True)
class Estimate:
    """A figure, its uncertainty (one standard error, or a standard deviation where a metric says so) and the
    number of samples it was computed on."""

    value: float
    std: float
    n: int

    def __str__(self):
        return f"{self.value:.4g} ± {self.std:.2g}"


def estimate(mean, std, n):
    """An Estimate from a mean, its standard error and the number of samples behind it."""
    return Estimate(float(mean), float(std), int(n))


def plain(obj):
    """obj with every Estimate turned into {"value", "std", "n"}, ready for JSON."""
    if isinstance(obj, Estimate):
        return dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def from_plain(obj):
    """`plain`'s inverse: every {"value", "std", "n"} back into an Estimate."""
    if isinstance(obj, dict):
        if set(obj) == {"value", "std", "n"}:
            return Estimate(**obj)
        return {k: from_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_plain(v) for v in obj]
    return obj


def fid_statistics(features):
    """The FID statistics of a feature set, {"mu", "sigma"} in float64: computed here and nowhere else."""
    stats = fid_features_to_statistics(features.double())
    return {"mu": torch.from_numpy(stats["mu"]), "sigma": torch.from_numpy(stats["sigma"])}


def fid_from_statistics(stats, ref_stats):
    as_numpy = [{k: s[k].numpy() for k in ("mu", "sigma")} for s in (stats, ref_stats)]
    return float(fid_statistics_to_metric(*as_numpy, verbose=False)["frechet_inception_distance"])


def fid(gen, ref_stats):
    return fid_from_statistics(fid_statistics(gen), ref_stats)


def fid_bootstrap(gen, ref_stats, seed=0):
    """FID (torch-fidelity's) and its spread over bootstrap resamples of the generated set. The resamples use
    tr √(Σ₁Σ₂) = Σ √λ(Σ₂^½ Σ₁ Σ₂^½), with Σ₂^½ computed once: the same figure in a tenth of the time."""
    g = torch.Generator().manual_seed(seed)
    gen = gen.double()
    mu2, sigma2 = ref_stats["mu"].double(), ref_stats["sigma"].double()
    values, vectors = torch.linalg.eigh(sigma2)
    root2 = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    rounds = []
    for _ in range(BOOTSTRAP_ROUNDS):
        sample = gen[torch.randint(0, len(gen), (len(gen),), generator=g)]
        mu1, centred = sample.mean(dim=0), sample - sample.mean(dim=0)
        sigma1 = centred.T @ centred / (len(sample) - 1)
        cross = torch.linalg.eigvalsh(root2 @ sigma1 @ root2).clamp(min=0).sqrt().sum()
        rounds.append(float((mu1 - mu2).pow(2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross))
    return fid(gen, ref_stats), float(np.std(rounds))


def kid(features, ref_features, subset_size, seed=0):
    """KID: the unbiased MMD² with the polynomial kernel (x·y/d + 1)³ over KID_SUBSETS random subsets of
    `subset_size`, drawn as torch-fidelity draws them (numpy's RandomState(seed)), its arithmetic in torch:
    (mean, spread over subsets), equal to torch-fidelity's kid_features_to_metric to float32 rounding (tested)."""
    rng = np.random.RandomState(seed)
    x_all, y_all = features.float(), ref_features.float()
    m, d = subset_size, x_all.shape[1]

    def kernel_sum(a, b, off_diagonal):
        k = torch.addmm(torch.ones(()), a, b.T, alpha=1 / d).pow_(3)
        total = k.sum(dim=1).double().sum()  # rows in float32, their total in float64
        return total - k.diagonal().double().sum() if off_diagonal else total

    mmds = []
    for _ in range(KID_SUBSETS):
        x = x_all[torch.from_numpy(rng.choice(len(x_all), m, replace=False))]
        y = y_all[torch.from_numpy(rng.choice(len(y_all), m, replace=False))]
        within = kernel_sum(x, x, True) + kernel_sum(y, y, True)
        mmds.append(float(within / (m * (m - 1)) - 2 * kernel_sum(x, y, False) / (m * m)))
    return float(np.mean(mmds)), float(np.std(mmds))


def knn_space(features):
    """k-NN metrics work on L2-normalised features: on raw ReLU features, blurred digits drift towards
    the origin where a few reference outliers' large balls cover them, and precision *rises* with blur
    (measured in docs/benchmarks.md); on the unit sphere it falls as it should."""
    return features.float() / features.float().norm(dim=1, keepdim=True).clamp(min=1e-8)


def squared_distances(a, b, b_squared=None):
    """|a_i − b_j|² for every i, j, as one matrix product (what torch.cdist does for large sets, without the
    square root: the k-NN metrics compare squared distances with squared radii)."""
    b_squared = b.pow(2).sum(dim=1) if b_squared is None else b_squared
    return torch.addmm(b_squared[None], a, b.T, alpha=-2).add_(a.pow(2).sum(dim=1, keepdim=True)).clamp_(min=0)


def kth_radius(features, k):
    """Distance of each point to its k-th nearest neighbour in the same set (itself excluded)."""
    b_squared = features.pow(2).sum(dim=1)
    return torch.cat([squared_distances(chunk, features, b_squared).topk(k + 1, dim=1, largest=False).values[:, k]
                      for chunk in features.split(2000)]).sqrt()


def knn_reference(ref, n, seed=0):
    """(reference points, radii for k = PR_K, radii for k = DC_K) for n generated samples.

    k-NN radii grow as a set shrinks, so with fewer samples than reference images the metrics compare
    against an equal-sized random reference subset, as Kynkäänniemi et al. and Naeem et al. do; with
    a 1,000-sample set against all 10,000 test images, recall read 0.95 at a precision of 0.41."""
    points = knn_space(ref["features"])
    if n >= len(points):
        return points, ref["pr_radii"], ref["dc_radii"]
    subset = points[torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))[:n]]
    return subset, kth_radius(subset, PR_K), kth_radius(subset, DC_K)


def neighbourhood_metrics(gen, ref, ref_radius_pr, ref_radius_dc):
    """Precision and recall (Kynkäänniemi et al. 2019, k = PR_K) and density and coverage (Naeem et al.
    2020, k = DC_K) from one generated-to-reference distance matrix.

    Same definitions as torch-fidelity's prc_features_to_metric (tested equal); computing them here
    shares the one distance matrix and reuses the cached reference radii."""
    gen_radius2 = kth_radius(gen, PR_K).pow(2)
    pr2, dc2, ref_squared = ref_radius_pr.pow(2)[None], ref_radius_dc.pow(2)[None], ref.pow(2).sum(dim=1)
    in_ref_ball, in_gen_ball, dc_count, covered = [], torch.zeros(len(ref), dtype=torch.bool), [], torch.zeros(len(ref), dtype=torch.bool)
    for chunk, radius2 in zip(gen.split(2000), gen_radius2.split(2000)):
        d2 = squared_distances(chunk, ref, ref_squared)  # (chunk, M)
        in_ref_ball.append((d2 <= pr2).any(dim=1))
        in_gen_ball |= (d2 <= radius2[:, None]).any(dim=0)
        inside_dc = d2 <= dc2
        dc_count.append(inside_dc.view(torch.uint8).sum(dim=1, dtype=torch.int32))
        covered |= inside_dc.any(dim=0)
    n, m = len(gen), len(ref)
    precision, recall = torch.cat(in_ref_ball).double().mean(), in_gen_ball.double().mean()
    per_sample = torch.cat(dc_count).double() / DC_K
    coverage = covered.double().mean()
    return {"precision": estimate(precision, binomial_se(precision, n), n),
            "recall": estimate(recall, binomial_se(recall, m), n),
            "density": estimate(per_sample.mean(), per_sample.std() / math.sqrt(n), n),
            "coverage": estimate(coverage, binomial_se(coverage, m), n)}


def binomial_se(p, n):
    p = float(p)
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def class_scores(logits, seed=0):
    """Inception-Score analogue, the class histogram with its entropy and KL to uniform, mean confidence."""
    n = len(logits)
    isc = isc_features_to_metric(logits, splits=min(10, n // 2), rng_seed=seed)
    probs = logits.double().softmax(dim=1)
    labels = probs.argmax(dim=1)

    def entropy(lbls):
        p = torch.bincount(lbls, minlength=10).double() / len(lbls)
        return -(p[p > 0] * p[p > 0].log()).sum().item()

    g = torch.Generator().manual_seed(seed)
    boot = [entropy(labels[torch.randint(0, n, (n,), generator=g)]) for _ in range(BOOTSTRAP_ROUNDS)]
    h, confidence = entropy(labels), probs.max(dim=1).values
    return {
        "inception_score": estimate(isc["inception_score_mean"], isc["inception_score_std"], n),
        "class_entropy": estimate(h, np.std(boot), n),
        "class_kl_uniform": estimate(math.log(10) - h, np.std(boot), n),
        "mean_confidence": estimate(confidence.mean(), confidence.std() / math.sqrt(n), n),
        "class_histogram": torch.bincount(labels, minlength=10).tolist(),
    }


def conditional_scores(logits, features, labels, class_references):
    """What a class-conditional set adds, over its images asked to be a class (the null label, `len(
    class_references)`, is left out): conditioned accuracy, the share the classifier puts in the class asked
    for (binomial standard error); and FID within each class against that class's reference images, as the mean
    over the classes with at least MIN_SAMPLES images (± its standard error over classes) and the worst class.
    Per-class FID at 100 images a class carries a large small-sample bias: compare it at equal N only."""
    asked = labels < len(class_references)
    n = int(asked.sum())
    if n == 0:
        return {}
    accuracy = (logits[asked].argmax(dim=1) == labels[asked]).double().mean()
    scores = {"conditioned_accuracy": estimate(accuracy, binomial_se(accuracy, n), n)}
    per_class = {int(c): fid(features[labels == c], class_references[int(c)])
                 for c in labels[asked].unique() if int((labels == c).sum()) >= MIN_SAMPLES}
    if per_class:
        values = torch.tensor(list(per_class.values()), dtype=torch.float64)
        spread = float(values.std() / math.sqrt(len(values))) if len(values) > 1 else float("nan")
        worst = max(per_class, key=per_class.get)
        scores["class_fid"] = estimate(values.mean(), spread, n)
        scores["class_fid_worst"] = {"class": worst, "fid": per_class[worst]}
    return scores


def _centred(images):
    """uint8 pixels as int8 around 128: exact integer dot products, 4× the speed of float32 matrix products."""
    return (torch.as_tensor(images).flatten(1).to(torch.int16) - 128).to(torch.int8)


def _int_dot(a, b_t):
    """a (n, d) · b_t (d, m) in int32, exactly: int8 products through torch._int_mm where this torch has it,
    else in float64 (also exact, slower)."""
    try:
        return torch._int_mm(a, b_t)
    except (AttributeError, RuntimeError):
        return (a.double() @ b_t.double()).to(torch.int32)


def nearest_training(images, train_images, exclude_self=False):
    """(distance, index) of each image's nearest training image, in pixel L2 (images in [0, 1]).
    exclude_self: images *are* train_images, and each one's own zero distance is skipped.

    The products of centred pixels are exact integers; the nearest image is their float32 argmin of
    |b|² − 2a·b (the same on every machine: elementwise float32 rounding is exact IEEE), and its distance
    is then computed exactly from the integers."""
    train = _centred(train_images)
    train_t, train_sq = train.T.contiguous(), train.to(torch.int64).pow(2).sum(dim=1)
    train_sq_float = train_sq.float()[None]
    found, start = [], 0
    for chunk in torch.as_tensor(images).split(1024):
        a = _centred(chunk).contiguous()
        dot = _int_dot(a, train_t)
        score = dot.float().mul_(-2).add_(train_sq_float)
        if exclude_self:
            score[torch.arange(len(chunk)), torch.arange(start, start + len(chunk))] = float("inf")
        index = score.argmin(dim=1)
        squared = a.to(torch.int64).pow(2).sum(dim=1) + train_sq[index] - 2 * dot.gather(1, index[:, None])[:, 0]
        found.append((squared.double().sqrt() / 255, index))
        start += len(chunk)
    return torch.cat([f[0] for f in found]), torch.cat([f[1] for f in found])


def memorisation(gen_images, train_images, test_nn, train_nn, test_authenticity):
    """Copying, two ways: the median nearest-training-image distance of samples over that of held-out test
    images (well below 1: samples sit closer to training images than unseen real digits do), and
    authenticity (Alaa et al. 2022): the fraction of samples farther from their nearest training image x_j
    than x_j's own nearest training neighbour is (`train_nn`); a copy is not authentic, and unseen real
    digits score `test_authenticity`.
    `near_copies` is the fraction of samples closer than the 1st percentile of test images."""
    d, nearest = nearest_training(gen_images, train_images)
    authentic = (d > train_nn[nearest]).double().mean()
    threshold = torch.quantile(test_nn, 0.01)
    ratio = d.median() / test_nn.median()
    g = torch.Generator().manual_seed(0)
    boot = [d[torch.randint(0, len(d), (len(d),), generator=g)].median().item() / test_nn.median().item()
            for _ in range(BOOTSTRAP_ROUNDS)]
    near = (d < threshold).double().mean()
    return {"nn_distance_ratio": estimate(ratio, np.std(boot), len(d)),
            "near_copies": estimate(near, binomial_se(near, len(d)), len(d)),
            "authenticity": estimate(authentic, binomial_se(authentic, len(d)), len(d)),
            "sample_nn_distance_median": float(d.median()), "test_nn_distance_median": float(test_nn.median()),
            "test_authenticity": float(test_authenticity)}


def size_curve(features, ref, sizes, seed=0, draws=3):
    """{N: {"fid", "kid", "coverage"}} on random subsets of N samples (each the mean of `draws` subsets, std
    over them), for every N in `sizes` up to len(features): FID falls as N grows (Chong & Forsyth 2020), so
    figures compare only at equal N, or through `fid_infinity`."""
    g = torch.Generator().manual_seed(seed)
    ref_features = ref["features"].float()
    curve = {}
    for size in (s for s in sizes if s <= len(features)):
        picks = [torch.randperm(len(features), generator=g)[:size] for _ in range(draws if size < len(features) else 1)]
        rounds = []
        for pick in picks:
            sub = features[pick]
            kid_mean = kid(sub, ref_features, min(1000, size, len(ref_features)), seed)[0]
            coverage = neighbourhood_metrics(knn_space(sub), *knn_reference(ref, size, seed))["coverage"].value
            rounds.append((fid(sub, ref), kid_mean, coverage))
        spread = np.std(rounds, axis=0) if len(rounds) > 1 else [math.nan] * 3
        curve[size] = {key: estimate(np.mean([r[i] for r in rounds]), spread[i], size)
                       for i, key in enumerate(("fid", "kid", "coverage"))}
    return curve


def fid_infinity(curve):
    """FID extrapolated to infinitely many samples (Chong & Forsyth 2020): FID_N is linear in 1/N, so the
    intercept of a least-squares line through (1/N, FID_N); std is the intercept's standard error (NaN with
    fewer than three sizes)."""
    sizes = sorted(curve)
    if len(sizes) < 2:
        return None
    x = np.array([1 / s for s in sizes])
    y = np.array([curve[s]["fid"].value for s in sizes])
    A = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    std = math.nan
    if len(sizes) > 2:
        residual = y - A @ coef
        sigma2 = residual @ residual / (len(sizes) - 2)
        std = math.sqrt(sigma2 * np.linalg.inv(A.T @ A)[0, 0])
    return estimate(coef[0], std, sizes[-1])


def vendi_score(features, seed=0):
    """Vendi score (Friedman & Dieng 2023) with the cosine kernel: exp of the entropy of K/n's eigenvalues,
    the effective number of distinct samples. For unit features X, K/n = XXᵀ/n has the same non-zero
    eigenvalues as XᵀX/n (d × d), so it costs O(n d²) instead of O(n³)."""
    x = knn_space(features).double()

    def vendi(rows):
        eig = torch.linalg.eigvalsh(rows.T @ rows / len(rows)).clamp(min=0)
        eig = eig[eig > 1e-12]
        return math.exp(-(eig * eig.log()).sum().item())

    g = torch.Generator().manual_seed(seed)
    boot = [vendi(x[torch.randint(0, len(x), (len(x),), generator=g)]) for _ in range(BOOTSTRAP_ROUNDS)]
    return estimate(vendi(x), np.std(boot), len(x))


def space_metrics(features, ref, seed=0):
    """The metrics of one feature space: FID, KID, precision/recall, density/coverage and Vendi of generated
    features against a reference (`reference.space_reference`)."""
    n, m = len(features), len(ref["features"])
    if n < MIN_SAMPLES:
        raise DiffkitError(f"{n} samples are too few: the metrics need at least {MIN_SAMPLES} (use 10,000 for figures to report)")
    fid_value, fid_std = fid_bootstrap(features, ref, seed)
    kid_mean, kid_std = kid(features, ref["features"], min(1000, n, m), seed)
    return {
        "fid": estimate(fid_value, fid_std, n),
        "kid": estimate(kid_mean, kid_std, n),
        **neighbourhood_metrics(knn_space(features), *knn_reference(ref, n, seed)),
        "vendi": vendi_score(features, seed),
    }
