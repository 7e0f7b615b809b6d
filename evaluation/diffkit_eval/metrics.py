"""Every metric from one feature pass, each with its N and an uncertainty.

FID, KID and the Inception-Score analogue come from torch-fidelity's feature-level functions;
precision/recall (same definition as torch-fidelity's, tested equal), density/coverage (Naeem et
al. 2020) and the memorisation figure are computed here from one shared distance matrix. Uncertainties: FID by bootstrap over the generated samples, KID by the spread
over subsets, rates (precision, recall, coverage) by their binomial standard error.
"""

import math

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from diffkit.errors import DiffkitError

MIN_SAMPLES = 10
PR_K, DC_K = 3, 5
BOOTSTRAP_ROUNDS = 10
KID_SUBSETS = 50


def value(mean, std, n):
    return {"value": float(mean), "std": float(std), "n": int(n)}


def fid(gen, ref_stats):
    stats = fid_features_to_statistics(gen.double())
    return fid_statistics_to_metric(stats, ref_stats, verbose=False)["frechet_inception_distance"]


def fid_bootstrap(gen, ref_stats, seed=0):
    """FID and its spread over bootstrap resamples of the generated set."""
    g = torch.Generator().manual_seed(seed)
    rounds = [fid(gen[torch.randint(0, len(gen), (len(gen),), generator=g)], ref_stats) for _ in range(BOOTSTRAP_ROUNDS)]
    return fid(gen, ref_stats), float(np.std(rounds))


def knn_space(features):
    """k-NN metrics work on L2-normalised features: on raw ReLU features, blurred digits drift towards
    the origin where a few reference outliers' large balls cover them, and precision *rises* with blur
    (measured in docs/benchmarks.md); on the unit sphere it falls as it should."""
    return features.float() / features.float().norm(dim=1, keepdim=True).clamp(min=1e-8)


def kth_radius(features, k):
    """Distance of each point to its k-th nearest neighbour in the same set (itself excluded)."""
    return torch.cat([torch.cdist(chunk, features).topk(k + 1, dim=1, largest=False).values[:, k]
                      for chunk in features.split(2000)])


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
    gen_radius = kth_radius(gen, PR_K)
    in_ref_ball, in_gen_ball, dc_count, covered = [], torch.zeros(len(ref), dtype=torch.bool), [], torch.zeros(len(ref), dtype=torch.bool)
    for chunk, radius in zip(gen.split(2000), gen_radius.split(2000)):
        d = torch.cdist(chunk, ref)  # (chunk, M)
        in_ref_ball.append((d <= ref_radius_pr[None]).any(dim=1))
        in_gen_ball |= (d <= radius[:, None]).any(dim=0)
        inside_dc = d <= ref_radius_dc[None]
        dc_count.append(inside_dc.sum(dim=1))
        covered |= inside_dc.any(dim=0)
    n, m = len(gen), len(ref)
    precision, recall = torch.cat(in_ref_ball).double().mean(), in_gen_ball.double().mean()
    per_sample = torch.cat(dc_count).double() / DC_K
    coverage = covered.double().mean()
    return {"precision": value(precision, binomial_se(precision, n), n),
            "recall": value(recall, binomial_se(recall, m), n),
            "density": value(per_sample.mean(), per_sample.std() / math.sqrt(n), n),
            "coverage": value(coverage, binomial_se(coverage, m), n)}


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
        "inception_score": value(isc["inception_score_mean"], isc["inception_score_std"], n),
        "class_entropy": value(h, np.std(boot), n),
        "class_kl_uniform": value(math.log(10) - h, np.std(boot), n),
        "mean_confidence": value(confidence.mean(), confidence.std() / math.sqrt(n), n),
        "class_histogram": torch.bincount(labels, minlength=10).tolist(),
    }


def nearest_distance(images, train_images):
    """Pixel L2 distance (images in [0, 1]) from each image to its nearest training image."""
    train = train_images.flatten(1).float() / 255
    return torch.cat([torch.cdist(chunk.flatten(1).float() / 255, train).min(dim=1).values
                      for chunk in torch.as_tensor(images).split(1000)])


def memorisation(gen_images, train_images, test_nn):
    """Median nearest-training-image distance of samples, over that of held-out test images.

    A ratio well below 1 means samples sit closer to training images than unseen real digits do:
    copying. `near_copies` is the fraction of samples closer than the 1st percentile of test images."""
    d = nearest_distance(gen_images, train_images)
    threshold = torch.quantile(test_nn, 0.01)
    ratio = d.median() / test_nn.median()
    g = torch.Generator().manual_seed(0)
    boot = [d[torch.randint(0, len(d), (len(d),), generator=g)].median().item() / test_nn.median().item()
            for _ in range(BOOTSTRAP_ROUNDS)]
    near = (d < threshold).double().mean()
    return {"nn_distance_ratio": value(ratio, np.std(boot), len(d)),
            "near_copies": value(near, binomial_se(near, len(d)), len(d)),
            "sample_nn_distance_median": float(d.median()), "test_nn_distance_median": float(test_nn.median())}


def scorecard(gen, ref, seed=0):
    """All metrics of a generated set against a reference.

    gen: {"features", "logits", "images"};
    ref: {"features", "fid_stats", "pr_radii", "dc_radii", "train_images", "test_nn"}."""
    n, m = len(gen["features"]), len(ref["features"])
    if n < MIN_SAMPLES:
        raise DiffkitError(f"{n} samples are too few: the metrics need at least {MIN_SAMPLES} (use 10,000 for figures to report)")
    features = gen["features"].double()
    ref_features = ref["features"].double()
    fid_value, fid_std = fid_bootstrap(features, ref["fid_stats"], seed)
    kid = kid_features_to_metric(features.float(), ref_features.float(), kid_subsets=KID_SUBSETS,
                                 kid_subset_size=min(1000, n, m), kid_degree=3, kid_gamma=None, kid_coef0=1,
                                 verbose=False, rng_seed=seed)
    return {
        "fid": value(fid_value, fid_std, n),
        "kid": value(kid["kernel_inception_distance_mean"], kid["kernel_inception_distance_std"], n),
        **neighbourhood_metrics(knn_space(gen["features"]), *knn_reference(ref, n, seed)),
        **class_scores(gen["logits"], seed),
        **memorisation(gen["images"], ref["train_images"], ref["test_nn"]),
    }
