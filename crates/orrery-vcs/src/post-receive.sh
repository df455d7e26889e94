#!/bin/sh
# Orrery post-receive hook: tells an Orrery server about every branch and tag
# pushed to this repository, so that it can start pipelines.
#
# Install it as hooks/post-receive in a bare repository and make it executable.
# Each setting is read from the environment, or else from the repository's git
# configuration (`git config orrery.webhookUrl https://...`), which suits a
# server where pushes arrive over SSH with a bare environment:
#
#   ORRERY_WEBHOOK_URL     (orrery.webhookUrl)     Required. The server's generic
#                                                  webhook endpoint.
#   ORRERY_WEBHOOK_SECRET  (orrery.webhookSecret)  Required. The secret shared with
#                                                  the server; each request carries
#                                                  X-Orrery-Signature: sha256=<HMAC>.
#                                                  It is passed to openssl as an
#                                                  argument, so local users who can
#                                                  list processes may see it.
#   ORRERY_REPO_URL        (orrery.repoUrl)        The URL the server clones from.
#                                                  Default: this repository's
#                                                  absolute path.
#   ORRERY_REPO_NAME       (orrery.repoName)       The project's name. Default: this
#                                                  directory's name without `.git`.
#   ORRERY_PUSHER                                  Who pushed. Default: $GL_USER
#                                                  (gitolite), else $USER, else
#                                                  `id -un`.
#
# For each "<old-sha> <new-sha> <ref>" line that git writes to the hook's input,
# branches (refs/heads/*) and tags (refs/tags/*) are sent, one POST each, as
#
#   {"ref":"refs/heads/main","before":"<sha>","after":"<sha>",
#    "repository":"<clone url>","name":"<name>","pusher":"<user>",
#    "message":"<commit message>","author_name":"...","author_email":"...",
#    "timestamp":"<author date, ISO 8601>"}
#
# "after" is the commit (an annotated tag is peeled to the commit it tags); a
# deleted ref is sent with the all-zero SHA and no commit fields. Needs git,
# awk, openssl and curl. A failed delivery is reported and makes the hook exit 1,
# which git shows to the pusher; the push itself stands either way.

set -u

# Prints the environment value $1, or else the git config value $2.
setting() {
	if [ -n "$1" ]; then
		printf '%s' "$1"
	else
		git config --get "$2" 2>/dev/null
	fi
}

# Prints its input as the inside of a JSON string: backslashes, quotes and
# control characters escaped, lines joined by \n, trailing empty lines dropped.
# Bytes above 0x7f pass through, so UTF-8 text stays UTF-8.
json() {
	LC_ALL=C awk '
	BEGIN { for (i = 1; i < 32; i++) code[sprintf("%c", i)] = i }
	{
		out = ""
		n = length($0)
		for (i = 1; i <= n; i++) {
			c = substr($0, i, 1)
			if (c == "\\") out = out "\\\\"
			else if (c == "\"") out = out "\\\""
			else if (c == "\t") out = out "\\t"
			else if (c == "\r") out = out "\\r"
			else if (c in code) out = out sprintf("\\u%04x", code[c])
			else out = out c
		}
		lines[NR] = out
		if (n > 0) last = NR
	}
	END { for (i = 1; i <= last; i++) printf "%s%s", (i > 1 ? "\\n" : ""), lines[i] }
	'
}

url=$(setting "${ORRERY_WEBHOOK_URL:-}" orrery.webhookUrl)
secret=$(setting "${ORRERY_WEBHOOK_SECRET:-}" orrery.webhookSecret)
if [ -z "$url" ] || [ -z "$secret" ]; then
	echo "orrery: set ORRERY_WEBHOOK_URL and ORRERY_WEBHOOK_SECRET (or git config orrery.webhookUrl and orrery.webhookSecret); Orrery was not notified" >&2
	exit 1
fi

gitdir=$(cd "$(git rev-parse --git-dir)" && pwd -P) || exit 1
case $gitdir in
*/.git) workdir=${gitdir%/.git} ;;
*) workdir=$gitdir ;;
esac
repo_url=$(setting "${ORRERY_REPO_URL:-}" orrery.repoUrl)
[ -n "$repo_url" ] || repo_url=$gitdir
repo_name=$(setting "${ORRERY_REPO_NAME:-}" orrery.repoName)
[ -n "$repo_name" ] || repo_name=$(basename "$workdir" .git)
pusher=${ORRERY_PUSHER:-${GL_USER:-${USER:-$(id -un 2>/dev/null)}}}

body_file=$(mktemp) || exit 1
trap 'rm -f "$body_file"' EXIT
trap 'exit 1' HUP INT TERM

status=0
while read -r oldrev newrev refname || [ -n "${refname:-}" ]; do
	case $refname in
	refs/heads/* | refs/tags/*) ;;
	*) continue ;;
	esac
	after=$newrev message='' author_name='' author_email='' timestamp=''
	case $newrev in
	*[!0]*)
		if ! commit=$(git rev-parse -q --verify "$newrev^{commit}"); then
			echo "orrery: $refname does not point to a commit; not sent" >&2
			continue
		fi
		after=$commit
		message=$(git log -1 --format=%B "$commit" | json)
		author_name=$(git log -1 --format=%an "$commit" | json)
		author_email=$(git log -1 --format=%ae "$commit" | json)
		timestamp=$(git log -1 --format=%aI "$commit" | json)
		;;
	esac
	printf '{"ref":"%s","before":"%s","after":"%s","repository":"%s","name":"%s","pusher":"%s","message":"%s","author_name":"%s","author_email":"%s","timestamp":"%s"}' \
		"$(printf '%s' "$refname" | json)" \
		"$(printf '%s' "$oldrev" | json)" \
		"$(printf '%s' "$after" | json)" \
		"$(printf '%s' "$repo_url" | json)" \
		"$(printf '%s' "$repo_name" | json)" \
		"$(printf '%s' "$pusher" | json)" \
		"$message" "$author_name" "$author_email" "$timestamp" >"$body_file"
	signature=$(openssl dgst -sha256 -hmac "$secret" <"$body_file" | awk '{ print $NF }')
	if ! curl -fsS --max-time 30 -o /dev/null \
		-H 'Content-Type: application/json' \
		-H 'Expect:' \
		-H "X-Orrery-Signature: sha256=$signature" \
		--data-binary "@$body_file" "$url" </dev/null; then
		echo "orrery: could not notify $url of $refname" >&2
		status=1
	fi
done
exit $status
