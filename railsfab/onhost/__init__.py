"""Programs that run on the hosts, kept as files so they are linted and tested like code"""
