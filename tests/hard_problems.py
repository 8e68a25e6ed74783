"""A catalogue of hard activations, beside :mod:`problems`: each with what the
signature must report, computed independently (closed forms, or mpmath at 30
digits in the tests that use them).

Classes: exponential growth (overflow far out), power singularities of phi and
phi' at a kink (integrable or not), damped oscillation at infinity (faster than
the line's tail panels resolve), algebraic approach to the asymptote, and many
extrema and crossings.
"""

import math

import jax.numpy as jnp
import mpmath as mp

import jaxsig

mp.mp.dps = 30


def exp(x):
    return jnp.exp(x)


def cosh(x):
    return jnp.cosh(x)


def inverse(x):
    return 1.0 / x


def sinc(x):
    return jnp.sinc(x / jnp.pi)  # sin(x) / x, exactly 1 at 0


def x_arctan(x):
    return x * jnp.arctan(x)


def lorentz_bump(x):
    return x + 1.0 / (1.0 + x**2)


def cauchy_cubed(x):
    return x + (1.0 + x**2) ** -1.5


def slow_bump(x):
    return x + x / (1.0 + x**2)


#: Algebraic approaches to the asymptote: ``phi - alpha x - beta ~ x^-p``.
ALGEBRAIC = ("x_arctan", "lorentz_bump", "cauchy_cubed", "slow_bump")


def damped_wave(x):
    return jnp.sin(x) / (1.0 + x**2)


def _damped_wave_c():
    # |sin x| = 2/pi - (4/pi) sum_k cos(2 k x) / (4 k^2 - 1) and
    # int_0^inf cos(2 k x) / (1 + x^2) dx = (pi/2) e^(-2k), so
    # int_0^inf |sin x| / (1 + x^2) dx = 1 - 2 sum_k e^(-2k) / (4 k^2 - 1); c is twice that.
    return float(2 * (1 - 2 * mp.nsum(lambda k: mp.exp(-2 * k) / (4 * k * k - 1), [1, mp.inf])))


def _damped_wave_b():
    # int_0^inf sin x / (1 + x^2) dx = (e^-1 Ei(1) - e Ei(-1)) / 2.
    return float((mp.exp(-1) * mp.ei(1) - mp.e * mp.ei(-1)) / 2)


def wave_packet(x):
    return jnp.exp(-(x**2) / 8.0) * jnp.sin(4.0 * x)


# signed_sqrt is registered, with its kink at 0 declared.
SIGNED_SQRT = jaxsig.activations.get("signed_sqrt")

#: Closed forms at sigma = 1, mu = 0.
EXACT = {
    "exp": dict(m1=math.exp(0.5), g1=math.exp(0.5), m2=math.exp(2.0), alpha_plus=math.inf, growth=2),
    "cosh": dict(m1=math.exp(0.5), m2=(1.0 + math.exp(2.0)) / 2.0, alpha_plus=math.inf, alpha_minus=-math.inf),
    # E[phi'] = E[1 / (2 sqrt|X|)] = Gamma(1/4) / (2^(5/4) sqrt(pi)); E[phi'^2] = E[1/(4|X|)] = inf.
    "signed_sqrt": dict(g1=float(mp.gamma(0.25) / (2 ** mp.mpf(1.25) * mp.sqrt(mp.pi))), g2=math.inf, g4=math.inf),
    # E[1/X^2] = inf; E[1/X] is not absolutely convergent: undefined.
    "inverse": dict(m2=math.inf, m1=math.nan),
    # sin(x)/x -> 0 at both ends, slowly and oscillating; int |sin x / x| = inf.
    "sinc": dict(beta_plus=0.0, beta_minus=0.0, alpha_plus=0.0, c=math.inf),
    # x arctan x = (pi/2)|x| - 1 + 1/(3 x^2) + ...: c = 2 int_0^inf (1 - x arctan(1/x)) dx = pi/2.
    "x_arctan": dict(alpha_plus=math.pi / 2, beta_plus=-1.0, beta_minus=-1.0, c=math.pi / 2, b=math.pi / 2),
    # x + 1/(1 + x^2): the remainder is the Lorentzian, c = b = int 1/(1 + x^2) = pi (x^-2 tail).
    "lorentz_bump": dict(alpha_plus=1.0, beta_plus=0.0, beta_minus=0.0, c=math.pi, b=math.pi),
    # x + (1 + x^2)^(-3/2): c = b = 2 int_0^inf (1 + x^2)^(-3/2) dx = 2 (x^-3 tail).
    "cauchy_cubed": dict(alpha_plus=1.0, beta_plus=0.0, beta_minus=0.0, c=2.0, b=2.0),
    # x + x/(1 + x^2): the remainder ~ 1/x, so int |phi - x| diverges (log).
    "slow_bump": dict(alpha_plus=1.0, beta_plus=0.0, beta_minus=0.0, c=math.inf, b=math.nan),
    # An oscillation under an integrable x^-2 envelope: c finite, although the
    # line's graded tail panels span several of its periods.
    "damped_wave": dict(alpha_plus=0.0, beta_plus=0.0, c=_damped_wave_c(), b_plus=_damped_wave_b()),
}


def wave_packet_tv_and_c():
    """``TV(phi') = int |phi''|`` and ``c = int |phi|`` of the wave packet (its slopes
    and intercepts are 0), by scipy between the sign changes, found by bracketing.

    ``phi'' = exp(-x^2/8) ((x^2/16 - 65/4) sin 4x - 2x cos 4x)``; ``phi`` changes
    sign at ``k pi / 4``. Beyond ``|x| = 24`` both integrands are below 1e-30.
    """
    import numpy as np
    from scipy import integrate, optimize

    def d2(t):
        return math.exp(-t * t / 8) * ((t * t / 16 - 65 / 4) * math.sin(4 * t) - 2 * t * math.cos(4 * t))

    def phi(t):
        return math.exp(-t * t / 8) * math.sin(4 * t)

    grid = np.linspace(-24.0, 24.0, 20001)
    vals = np.array([d2(t) for t in grid])
    roots = [
        optimize.brentq(d2, a, b, xtol=1e-15)
        for a, b, va, vb in zip(grid[:-1], grid[1:], vals[:-1], vals[1:])
        if va * vb < 0
    ]
    pts = [-24.0, *roots, 24.0]
    tv = sum(abs(integrate.quad(d2, a, b, epsabs=1e-15, epsrel=1e-13)[0]) for a, b in zip(pts[:-1], pts[1:]))
    zeros = [k * math.pi / 4 for k in range(-30, 31)]
    c = sum(abs(integrate.quad(phi, a, b, epsabs=1e-15, epsrel=1e-13)[0]) for a, b in zip(zeros[:-1], zeros[1:]))
    return tv, c
