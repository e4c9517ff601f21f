# For each gem named in GEMS (space separated): the Debian package that provides it, asked of
# this host's apt lists. Debian names a gem's package ruby-<gem> (lower case, _ as -), a few
# keep the gem's own name (puma, unicorn, rake, racc, rubocop) and Rails' own plugins are
# ruby-rails-<gem> (propshaft). Prints "GEM PACKAGE VERSION", or "GEM -" when none does.
set -u
for g in $GEMS; do
  n=$(printf '%s' "$g" | tr 'A-Z_' 'a-z-')
  found="-"
  for c in "ruby-$n" "$n" "ruby-rails-$n"; do
    v=$(apt-cache show --no-all-versions "$c" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
    if [ -n "$v" ]; then found="$c $v"; break; fi
  done
  echo "$g $found"
done
