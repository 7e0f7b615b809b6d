"""The evaluation harness: feature spaces, metrics, comparisons and reports.

A plugin like any other: it adds its feature spaces and commands through the register_feature_spaces and
register_commands hooks, so the core never imports it.
"""

from diffkit import hookimpl


@hookimpl
def register_feature_spaces(register):
    from diffkit_eval.features import AutoencoderSpace, ClassifierSpace, InceptionSpace

    register(ClassifierSpace, name="classifier")
    register(AutoencoderSpace, name="autoencoder")
    register(InceptionSpace, name="inception-v3")


@hookimpl
def register_commands(cli):
    from diffkit_eval.commands import register

    register(cli)


@hookimpl
def score_samples(samples, settings):
    from diffkit_eval.evaluate import score_samples as score

    return score(samples, **settings)


@hookimpl
def best_scores(folder):
    from diffkit_eval.report import best_scores as read

    return read(folder)
