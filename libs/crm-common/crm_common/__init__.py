"""Building blocks every CRM process shares.

Modules at this level are pure Python (no eventlet, no nameko) so the gateway can
import them; nameko-specific parts live in :mod:`crm_common.nameko`.
"""
