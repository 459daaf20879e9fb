"""pairmine"""
