#pragma once
// YAML input, as people write manifests: one or more documents (`---`), each
// a Kubernetes object or a List. Each document becomes the DOM the JSON
// reader's reference path reads (k8s.h), so both formats share one reader,
// one set of rules and one set of error messages. Plain scalars resolve as
// kubectl's YAML reader (go-yaml v2, YAML 1.1) resolves them: `80` is a
// number, `"80"` a string, `yes`/`no`/`on`/`off` booleans, `~` and `null`
// null. Anchors, aliases and merge keys (`<<: *defaults`) as go-yaml v2
// reads them; a key written twice in one mapping is kept twice, for the
// reader to refuse as it refuses a JSON key given twice; aliases that would
// expand past what the document itself holds are refused ("billion laughs").

#include <rapidjson/fwd.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "netlink/status.h"

namespace kipvs::controller {

struct YamlDocument {
  int index = 0;  // 1-based position among the input's documents, empty ones included
  int line = 0;   // 1-based line where it starts
  std::string json;
};

// Calls each(index, line, root) for the input's documents in order, empty
// (null) ones left out: index counts from 1, empty ones included; line is
// where the document starts (1-based). A YAML error is kParse, naming
// sourceName with line and column; an error from `each` stops the walk and
// is returned.
using YamlDocumentFn = std::function<Status(int index, int line, const rapidjson::Value& root)>;
Status forEachYamlDocument(std::string_view text, std::string_view sourceName, const YamlDocumentFn& each);

// The same documents as JSON text (tests, tools).
StatusOr<std::vector<YamlDocument>> yamlToJson(std::string_view text, std::string_view sourceName);

// Whether an input is YAML. As kubectl decides, by content: JSON when its
// first byte that is not whitespace is '{' (or '[', an error either way, the
// JSON parser's the clearer), whatever the file's name. Otherwise YAML,
// unless the file is named *.json: what starts oddly there gets the JSON
// parser's error, with its byte offset.
bool isYamlInput(std::string_view path, std::string_view text);

}  // namespace kipvs::controller
