"""Designing activations: parametrised families, the target language, and the
augmented-Lagrangian search (named ``designing`` so that it does not shadow the
function :func:`jaxsig.design`)."""
