"""Commitments: what the portfolio is obliged to do, per pool and ISP, whoever obliged it."""
