"""The theory built on the signature: taxonomy and report card, dual kernels,
and the mean-field theory of signal propagation (:mod:`jaxsig.theory.meanfield`)."""
