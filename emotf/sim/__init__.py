"""Synthetic microscope: EPU-style sessions with known drift, CTF and particle positions."""

from .session import SessionSimulator, SessionTruth, SimParams, simulate_session

__all__ = ["SessionSimulator", "SessionTruth", "SimParams", "simulate_session"]
