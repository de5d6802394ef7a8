"""The portfolio: charging needs, pools (sites, congestion points), flexibility per pool and ISP, forecasts."""
