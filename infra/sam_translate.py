"""Writes template.yaml as CloudFormation sees it after the SAM transform, for checkov.

usage: sam_translate.py TEMPLATE OUT.json

The functions, their roles, log settings, event rules and permissions that SAM expands
are what checkov's CloudFormation checks read; on the SAM source they see far less.
The transform runs offline: the template names managed policies by ARN only, so the
policy loader (which would ask IAM for names) is never needed.
"""
import json
import os
import sys

import yaml
from samtranslator.translator.transform import transform


class Loader(yaml.SafeLoader):
    """Reads CloudFormation's short forms (!Ref, !Sub, ...) as their long forms."""


def _intrinsic(tag):
    name = "Ref" if tag == "Ref" else "Fn::" + tag

    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return construct


for t in ["Ref", "Sub", "GetAtt", "If", "Equals", "Not", "And", "Or", "Join", "Select", "Split", "FindInMap", "ImportValue", "GetAZs", "Base64", "Cidr"]:
    Loader.add_constructor("!" + t, _intrinsic(t))


class NoManagedPolicies:
    def load(self):
        raise RuntimeError("the template must name managed policies by ARN")


def main():
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    src, out = sys.argv[1], sys.argv[2]
    with open(src) as f:
        template = yaml.load(f, Loader=Loader)
    # As `sam package` does: code from the bucket it uploads to.
    for name, res in template.get("Resources", {}).items():
        if res.get("Type") == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = f"s3://packaged-code/{name}.zip"
    params = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
    translated = transform(template, params, NoManagedPolicies())
    with open(out, "w") as f:
        json.dump(translated, f, indent=1)


if __name__ == "__main__":
    main()
