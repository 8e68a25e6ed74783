"""The core: activations, quadrature rules, limits, the Gaussian part, the
functionals, the signature and its batched evaluation.

Data flows one way through the package: ``core`` imports nothing above it;
``theory`` and ``designing`` build on ``core``; ``integrations`` and ``app`` on
everything.
"""
