"""Redundant requests across replicas (Joshi & Soljanin): service-time distributions fitted to
measured samples, a log-concavity test, and a discrete-event simulator of n FCFS servers where
each request goes to k of them and the other copies are cancelled on the first answer (or the
first start of service). Pure numpy; may import tiercut.measure, tiercut.link, tiercut.errors."""
from .distributions import (Empirical, HyperExponential, ShiftedExponential, fit_hyperexponential,
                            fit_shifted_exponential, log_concavity)
from .simulate import Result, break_even, simulate, sweep

__all__ = ["Empirical", "HyperExponential", "ShiftedExponential", "fit_hyperexponential",
           "fit_shifted_exponential", "log_concavity", "Result", "break_even", "simulate",
           "sweep"]
